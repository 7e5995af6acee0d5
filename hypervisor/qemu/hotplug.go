package qemu

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/vmledger/vmledger/domains"
	"github.com/vmledger/vmledger/hypervisor/qmp"
)

// Device hotplug. Each kind is created in a fixed order and released in
// the reverse order of its creation, with the same names, the lesson of
// the memory hot-unplug seed: release a thing the way it was obtained.
//
//	disk:   blockdev-add file node x-<id>-f, format node x-<id>; device_add
//	        virtio-blk-pci or usb-storage (on xhci0, added when missing)
//	        -> device_del; DEVICE_DELETED; blockdev-del x-<id>, x-<id>-f
//	nic:    netdev_add user net-<id>; device_add -> device_del;
//	        DEVICE_DELETED; netdev_del net-<id>
//	memory: file dimm-<id>.ram (created by the agent, zero, sparse);
//	        object-add memory-backend-file mem-<id>; device_add pc-dimm
//	        -> device_del; DEVICE_DELETED; object-del mem-<id>; file removed
//	serial: chardev-add socket ch-<id> (port-<id>.sock); device_add
//	        virtserialport on vser0 (added when missing) -> device_del;
//	        DEVICE_DELETED; chardev-remove ch-<id>; socket removed
//
// The command line (cmdline_hotplug.go) uses the same names, so a device
// attached live and one started with are released alike.

// Controllers added on first use; they stay until QEMU exits.
const (
	xhciID = "xhci0"
	vserID = "vser0"
)

func diskNode(id string) string          { return "x-" + id }
func fileNode(id string) string          { return "x-" + id + "-f" }
func netdevID(id string) string          { return "net-" + id }
func memObject(id string) string         { return "mem-" + id }
func chardevID(id string) string         { return "ch-" + id }
func dimmFile(p Paths, id string) string { return filepath.Join(p.Dir, "dimm-"+id+".ram") }
func portSocket(p Paths, id string) string {
	return filepath.Join(p.Dir, "port-"+id+".sock")
}

// deviceFiles are the DIMM files and port sockets in the run directory.
func deviceFiles(p Paths) []string {
	var out []string
	for _, pat := range []string{"dimm-*.ram", "port-*.sock"} {
		m, _ := filepath.Glob(filepath.Join(p.Dir, pat))
		out = append(out, m...)
	}
	return out
}

// createMemFile makes a fresh sparse file of zeros (see ramFile).
func createMemFile(path string, mib uint64, as runAs) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	err = f.Truncate(int64(mib) << 20)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = as.give(path)
	}
	if err != nil {
		os.Remove(path)
	}
	return err
}

// undo collects the release of what was created so far, run in reverse
// when a later step fails.
type undo []releaser

// releaser frees one thing a device was given.
type releaser func(context.Context) error

func (u undo) run(ctx context.Context) {
	for i := len(u) - 1; i >= 0; i-- {
		_ = u[i](ctx) // the attach's own error is what the caller sees
	}
}

// CheckDevice refuses a spec whose host files may not be given to QEMU:
// a missing image, a protected file (the same checks as at start).
func (g *Guest) CheckDevice(spec domains.DeviceSpec) error {
	if spec.Kind != domains.KindDisk {
		return nil
	}
	if _, err := os.Stat(spec.Path); err != nil {
		return domains.Errorf(domains.CodeInvalid, "disk %s: image %s: %w", spec.ID, domains.Quote(spec.Path), errors.Unwrap(err))
	}
	if g.drv == nil {
		return nil
	}
	return g.drv.checkDisks(domains.Config{UUID: g.id, Disks: []domains.Disk{spec.Disk()}})
}

// AttachDevice creates the device's backends and the device itself in the
// running QEMU. On failure what was created is released again.
func (g *Guest) AttachDevice(ctx context.Context, spec domains.DeviceSpec) (err error) {
	var u undo
	defer func() {
		if err != nil {
			u.run(context.WithoutCancel(ctx))
			err = wrap("attach "+spec.ID, err)
		}
	}()
	m := g.mon
	exec := func(cmd string, args map[string]any, release releaser) error {
		if err := m.Execute(ctx, cmd, args, nil); err != nil {
			return err
		}
		if release != nil {
			u = append(u, release)
		}
		return nil
	}
	dev := map[string]any{"id": spec.ID}
	switch spec.Kind {
	case domains.KindDisk:
		file := map[string]any{"driver": fileDriver(spec.Path), "node-name": fileNode(spec.ID), "filename": spec.Path}
		format := map[string]any{"driver": diskFormat(spec.Format), "node-name": diskNode(spec.ID), "file": fileNode(spec.ID)}
		if spec.ReadOnly {
			file["read-only"], format["read-only"] = true, true
		}
		if err := exec("blockdev-add", file, g.blockdevDel(fileNode(spec.ID))); err != nil {
			return err
		}
		if err := exec("blockdev-add", format, g.blockdevDel(diskNode(spec.ID))); err != nil {
			return err
		}
		dev["drive"] = diskNode(spec.ID)
		switch spec.Disk().EffectiveBus() {
		case domains.BusVirtio:
			dev["driver"] = "virtio-blk-pci"
		case domains.BusUSB:
			if err := g.ensureController(ctx, xhciID, "qemu-xhci"); err != nil {
				return err
			}
			dev["driver"], dev["bus"] = "usb-storage", xhciID+".0"
			if spec.USBPort != 0 {
				dev["port"] = fmt.Sprint(spec.USBPort)
			}
		default:
			return domains.Errorf(domains.CodeInvalid, "disk %s: bus %s cannot be hot-plugged (virtio or usb)", spec.ID, spec.Disk().EffectiveBus())
		}
	case domains.KindNIC:
		if spec.Mode != "none" {
			if err := exec("netdev_add", map[string]any{"type": "user", "id": netdevID(spec.ID)}, g.netdevDel(netdevID(spec.ID))); err != nil {
				return err
			}
			dev["netdev"] = netdevID(spec.ID)
		}
		dev["driver"] = nicModel(spec.Model)
		if spec.MAC != "" {
			dev["mac"] = spec.MAC
		}
	case domains.KindMemory:
		path := dimmFile(g.paths, spec.ID)
		as := sameUser
		if g.drv != nil {
			as = g.drv.user
		}
		if err := createMemFile(path, spec.SizeMiB, as); err != nil {
			return err
		}
		u = append(u, removeFile(path))
		obj := map[string]any{"qom-type": "memory-backend-file", "id": memObject(spec.ID),
			"size": spec.SizeMiB << 20, "mem-path": path, "share": true}
		if err := exec("object-add", obj, g.objectDel(memObject(spec.ID))); err != nil {
			return err
		}
		dev["driver"], dev["memdev"] = "pc-dimm", memObject(spec.ID)
	case domains.KindSerial:
		if err := g.ensureController(ctx, vserID, "virtio-serial-pci"); err != nil {
			return err
		}
		sock := portSocket(g.paths, spec.ID)
		os.Remove(sock)
		ch := map[string]any{"id": chardevID(spec.ID), "backend": map[string]any{"type": "socket", "data": map[string]any{
			"addr":   map[string]any{"type": "unix", "data": map[string]any{"path": sock}},
			"server": true, "wait": false}}}
		if err := exec("chardev-add", ch, g.chardevRemove(chardevID(spec.ID), sock)); err != nil {
			return err
		}
		dev["driver"], dev["bus"], dev["chardev"] = "virtserialport", vserID+".0", chardevID(spec.ID)
		if spec.Name != "" {
			dev["name"] = spec.Name
		}
	default:
		return domains.Errorf(domains.CodeInvalid, "device %s: kind %q cannot be hot-plugged", spec.ID, spec.Kind)
	}
	return exec("device_add", dev, nil)
}

// DetachDevice asks QEMU to unplug the device (device_del). PCI devices
// and DIMMs wait for the guest; DEVICE_DELETED says when it is gone, and
// only then ReleaseDevice frees the backends.
func (g *Guest) DetachDevice(ctx context.Context, id string) error {
	return wrap("detach "+id, g.mon.Execute(ctx, "device_del", map[string]any{"id": id}, nil))
}

// ReleaseDevice frees what AttachDevice (or the command line) created for
// a device QEMU has deleted, in the reverse order of creation. Backends
// already gone (released before an agent restart) are not an error.
func (g *Guest) ReleaseDevice(ctx context.Context, spec domains.DeviceSpec) error {
	var steps []releaser
	switch spec.Kind {
	case domains.KindDisk:
		steps = append(steps, g.blockdevDel(diskNode(spec.ID)), g.blockdevDel(fileNode(spec.ID)))
	case domains.KindNIC:
		if spec.Mode != "none" {
			steps = append(steps, g.netdevDel(netdevID(spec.ID)))
		}
	case domains.KindMemory:
		path := dimmFile(g.paths, spec.ID)
		steps = append(steps, g.objectDel(memObject(spec.ID)), removeFile(path))
	case domains.KindSerial:
		steps = append(steps, g.chardevRemove(chardevID(spec.ID), portSocket(g.paths, spec.ID)))
	}
	var errs []error
	for _, s := range steps {
		if err := s(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	return wrap("release "+spec.ID, errors.Join(errs...))
}

// release runs one QMP command that frees a backend; "not found" means
// it is already free.
func (g *Guest) release(cmd string, args map[string]any) releaser {
	return func(ctx context.Context) error {
		err := g.mon.Execute(ctx, cmd, args, nil)
		var qe *qmp.Error
		if err == nil || errors.As(err, &qe) && (qe.Class == "DeviceNotFound" || strings.Contains(qe.Desc, "not found") || strings.Contains(qe.Desc, "Cannot find")) {
			return nil
		}
		g.log.Warn().Err(err).Str("cmd", cmd).Msg("cannot release a device backend")
		return fmt.Errorf("%s: %w", cmd, err)
	}
}

func removeFile(path string) releaser {
	return func(context.Context) error {
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		return nil
	}
}

func (g *Guest) blockdevDel(node string) releaser {
	return g.release("blockdev-del", map[string]any{"node-name": node})
}
func (g *Guest) netdevDel(id string) releaser {
	return g.release("netdev_del", map[string]any{"id": id})
}
func (g *Guest) objectDel(id string) releaser {
	return g.release("object-del", map[string]any{"id": id})
}
func (g *Guest) chardevRemove(id, sock string) releaser {
	rm := g.release("chardev-remove", map[string]any{"id": id})
	return func(ctx context.Context) error { return errors.Join(rm(ctx), removeFile(sock)(ctx)) }
}

// ensureController adds a controller (xHCI, virtio-serial) when QEMU has
// none of that id yet.
func (g *Guest) ensureController(ctx context.Context, id, driver string) error {
	ids, err := g.PeripheralIDs(ctx)
	if err != nil {
		return err
	}
	if slices.Contains(ids, id) {
		return nil
	}
	return g.mon.Execute(ctx, "device_add", map[string]any{"driver": driver, "id": id}, nil)
}

// PeripheralIDs lists the ids of the devices QEMU has (qom-list
// /machine/peripheral): the device set as QEMU sees it.
func (g *Guest) PeripheralIDs(ctx context.Context) ([]string, error) {
	var props []struct {
		Name string `json:"name"`
		Type string `json:"type"`
	}
	if err := g.mon.Execute(ctx, "qom-list", map[string]any{"path": "/machine/peripheral"}, &props); err != nil {
		return nil, wrap("qom-list", err)
	}
	var ids []string
	for _, p := range props {
		if strings.HasPrefix(p.Type, "child<") {
			ids = append(ids, p.Name)
		}
	}
	slices.Sort(ids)
	return ids, nil
}

func diskFormat(f string) string {
	if f == "" {
		return "raw"
	}
	return f
}

func nicModel(m string) string {
	if m == "" {
		return "virtio-net-pci"
	}
	return m
}
