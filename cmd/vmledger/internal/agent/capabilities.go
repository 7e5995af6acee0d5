package agent

import (
	"github.com/vmledger/vmledger/domains/api"
	"github.com/vmledger/vmledger/domains/owner"
)

// The verbs find the service's optional capabilities by type assertion
// (domains/api); these lines make a signature that drifts apart a build
// error instead of verbs that quietly answer "unavailable".
var (
	_ api.Service     = (*owner.Service)(nil)
	_ api.SaveService = (*owner.Service)(nil)
	_ api.DumpService = (*owner.Service)(nil)
)
