package coredump

import "fmt"

// Info summarises a dump for people and scripts (vmledger dump-info).
type Info struct {
	Format      string     `json:"format"`
	Flattened   bool       `json:"flattened"`
	Compression string     `json:"compression"`
	PageSize    int        `json:"page_size"`
	Pages       uint64     `json:"pages"`
	Extents     []Extent   `json:"extents"`
	Holes       []Extent   `json:"holes"`
	Notes       []NoteInfo `json:"notes"`
	OSRelease   string     `json:"os_release,omitempty"` // from VMCOREINFO
}

// NoteInfo describes one note.
type NoteInfo struct {
	Name     string        `json:"name"`
	Type     uint32        `json:"type"`
	Size     int           `json:"size"`
	What     string        `json:"what"`
	PRStatus *PRStatusInfo `json:"prstatus,omitempty"`
}

// Describe summarises f.
func Describe(f *File) Info {
	in := Info{Format: f.Format, Flattened: f.Flattened, Compression: f.Compression, PageSize: f.PageSize,
		Pages: f.Pages(), Extents: f.Extents, Holes: f.Holes(), Notes: []NoteInfo{}}
	if in.Extents == nil {
		in.Extents = []Extent{}
	}
	if in.Holes == nil {
		in.Holes = []Extent{}
	}
	for _, n := range f.Notes {
		ni := NoteInfo{Name: n.Name, Type: n.Type, Size: len(n.Desc), What: fmt.Sprintf("type %d", n.Type)}
		switch {
		case n.Name == NameCore && n.Type == NTPRStatus:
			ni.What = "NT_PRSTATUS"
			if p, err := ParsePRStatus(n.Desc); err == nil {
				ni.PRStatus = &p
			} else {
				ni.What = "NT_PRSTATUS (not x86_64)"
			}
		case n.Name == NameQEMU:
			ni.What = "CPU state"
		case n.Name == NameVMCoreInfo:
			ni.What = "kernel vmcoreinfo"
			if rel, ok := VMCoreInfoValue(n.Desc, "OSRELEASE"); ok {
				in.OSRelease = rel
			}
		}
		in.Notes = append(in.Notes, ni)
	}
	return in
}
