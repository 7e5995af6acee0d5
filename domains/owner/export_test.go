package owner

import "github.com/vmledger/vmledger/domains"

// SetOnApply makes s call fn with every event it folds, under its lock
// (before s is used: the field is not guarded).
func SetOnApply(s *Service, fn func(domains.Event)) { s.onApply = fn }

// RecoverParallel is how many domains Recover works on at once.
const RecoverParallel = recoverParallel
