package owner

import (
	"fmt"

	"github.com/vmledger/vmledger/domains"
)

// ConfigGuard confines the host files a configuration names (disks,
// kernel, initrd) to the directories and devices the agent allows
// (hypervisor/confine implements it; docs/security.md): Check at define,
// when a file may not exist yet, and Resolve again at use (start,
// restore, hot-plug), which returns the real path QEMU is then given.
type ConfigGuard interface {
	PathGuard
	Check(path string) error
}

// hostFile is one path of a config, by its field name for messages.
type hostFile struct {
	field string
	path  *string
}

// hostFiles are cfg's host paths, pointing into cfg (whose Disks and OS
// must be its own copies when they are to be changed).
func hostFiles(cfg *domains.Config) []hostFile {
	var fs []hostFile
	for i := range cfg.Disks {
		fs = append(fs, hostFile{fmt.Sprintf("disks[%d].path", i), &cfg.Disks[i].Path})
	}
	if cfg.OS != nil {
		for _, f := range []hostFile{{"os.kernel", &cfg.OS.Kernel}, {"os.initrd", &cfg.OS.Initrd}} {
			if *f.path != "" {
				fs = append(fs, f)
			}
		}
	}
	return fs
}

func refused(field string, err error) error {
	return domains.Errorf(domains.CodeInvalid, "%s: %w", field, err)
}

// checkPaths is define's test: every host file of cfg may be used.
func (s *Service) checkPaths(cfg domains.Config) error {
	if s.paths == nil {
		return nil
	}
	for _, f := range hostFiles(&cfg) {
		if err := s.paths.Check(*f.path); err != nil {
			return refused(f.field, err)
		}
	}
	return nil
}

// confined is cfg for the driver: every host file checked again now and
// replaced by its real path, so that what QEMU opens is what was checked
// (a symlink changed since define is followed no further).
func (s *Service) confined(cfg domains.Config) (domains.Config, error) {
	if s.paths == nil {
		return cfg, nil
	}
	cfg.Disks = append([]domains.Disk(nil), cfg.Disks...)
	if cfg.OS != nil {
		os := *cfg.OS
		cfg.OS = &os
	}
	for _, f := range hostFiles(&cfg) {
		real, err := s.paths.Resolve(*f.path, false)
		if err != nil {
			return domains.Config{}, refused(f.field, err)
		}
		*f.path = real
	}
	return cfg, nil
}

// confinedDevice is confined for a hot-plugged disk: checked (persist
// only) or resolved (live; the real path is what QEMU gets, the spec as
// given is what the log records).
func (s *Service) confinedDevice(spec domains.DeviceSpec, live bool) (domains.DeviceSpec, error) {
	if s.paths == nil || spec.Kind != domains.KindDisk {
		return spec, nil
	}
	field := "device " + domains.Quote(spec.ID) + " path"
	if !live {
		if err := s.paths.Check(spec.Path); err != nil {
			return spec, refused(field, err)
		}
		return spec, nil
	}
	real, err := s.paths.Resolve(spec.Path, false)
	if err != nil {
		return spec, refused(field, err)
	}
	spec.Path = real
	return spec, nil
}
