package coredump

// The kdump-compressed layout (makedumpfile's diskdump_mod.h), x86_64,
// little-endian, block size = page size:
//
//	block 0            disk_dump_header
//	block 1            kdump_sub_header, then the ELF notes
//	1+sub_hdr_size     1st bitmap: pages that exist (RAM, not holes)
//	                   2nd bitmap: pages dumped (here the same)
//	after the bitmaps  one page_desc per dumped page, in pfn order
//	then               page data: the shared zero page first, then each
//	                   other page compressed (or raw if that is smaller)
const (
	kdumpSignature  = "KDUMP   "
	kdumpVersion    = 6
	diskHeaderSize  = 464
	subHeaderSize   = 104
	pageDescSize    = 24
	utsFieldLen     = 65
	utsOffset       = 12
	offTimestamp    = 408
	offStatus       = 424
	offBlockSize    = 428
	offSubHdrSize   = 432
	offBitmapBlocks = 436
	offMaxMapnr     = 440
	offNrCPUs       = 460

	// kdump_sub_header offsets
	subPhysBase      = 0
	subDumpLevel     = 8
	subOffVMCoreInfo = 32
	subSizeVMCoreInf = 40
	subOffNote       = 48
	subSizeNote      = 56
	subMaxMapnr64    = 96
)

// utsname field indices (struct new_utsname).
const (
	utsSysname = iota
	utsNodename
	utsRelease
	utsVersion
	utsMachine
)
