// Package coredump writes and reads guest core dumps: ELF cores and the
// kdump-compressed format of makedumpfile (zlib, snappy or zstd per page,
// plain or in makedumpfile's flattened stream).
//
// It is a library with no agent: a writer takes guest RAM (an io.ReaderAt,
// normally the memory-backend-file), a guest-physical memory map saying
// which file offsets back which addresses, and the notes (NT_PRSTATUS per
// vCPU, QEMU's CPU state, VMCOREINFO). A reader opens any of these files,
// QEMU's own dump-guest-memory output included, and reads guest-physical
// addresses, reporting holes as holes. docs/coredump.md describes the
// layouts and why they are as they are.
package coredump
