package domainstest

import (
	"context"
	"slices"

	"github.com/vmledger/vmledger/domains"
)

// The device capability of a fake guest (domains/owner's devices): calls
// are recorded ("AttachDevice", "DetachDevice", "ReleaseDevice") and can
// be made to fail with Fail; the peripheral set follows attach and
// release, and SetPeripherals replaces it (a device gone while no agent
// watched).

func (g *FakeGuest) CheckDevice(domains.DeviceSpec) error { return g.call("CheckDevice") }

func (g *FakeGuest) AttachDevice(_ context.Context, s domains.DeviceSpec) error {
	if err := g.call("AttachDevice"); err != nil {
		return err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.periph = append(g.periph, s.ID)
	return nil
}

func (g *FakeGuest) DetachDevice(context.Context, string) error { return g.call("DetachDevice") }

func (g *FakeGuest) ReleaseDevice(_ context.Context, s domains.DeviceSpec) error {
	if err := g.call("ReleaseDevice"); err != nil {
		return err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.periph = slices.DeleteFunc(g.periph, func(id string) bool { return id == s.ID })
	return nil
}

func (g *FakeGuest) PeripheralIDs(context.Context) ([]string, error) {
	if err := g.call("PeripheralIDs"); err != nil {
		return nil, err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.periph), nil
}

// SetPeripherals sets the device ids the fake QEMU has.
func (g *FakeGuest) SetPeripherals(ids ...string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.periph = slices.Clone(ids)
}
