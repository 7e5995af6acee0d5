package qemu

import (
	"context"

	"github.com/vmledger/vmledger/domains"
)

// StartIncomingGuest is StartIncoming as the port a restore asks the
// driver for (domains/owner's incomingDriver capability).
func (d *Driver) StartIncomingGuest(ctx context.Context, spec domains.StartSpec) (domains.Guest, error) {
	return asGuest(d.StartIncoming(ctx, spec))
}
