package qemu

import "github.com/vmledger/vmledger/domains/owner"

// The capabilities asynchronous jobs ask of a guest (domains/owner,
// capabilities.go) are the ones this Guest has: a change of either side
// that breaks them fails to compile here.
var (
	_ owner.StreamOut    = (*Guest)(nil)
	_ owner.StreamIn     = (*Guest)(nil)
	_ owner.LiveSource   = (*Guest)(nil)
	_ owner.LiveIncoming = (*Guest)(nil)
)
