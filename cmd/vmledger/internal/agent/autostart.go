package agent

import (
	"context"
	"time"
)

// autostartTimeout bounds the autostart step: a start that hangs must not
// keep the agent from serving.
const autostartTimeout = 5 * time.Minute

// autostart starts the domains marked autostart (virsh autostart), once
// the guests that kept running are recovered. A start that fails is
// logged and does not fail the agent, as with libvirtd.
func (a *agent) autostart(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, autostartTimeout)
	defer cancel()
	started, err := a.svc.Autostart(ctx)
	for _, name := range started {
		a.log.Info().Str("domain", name).Msg("autostarted")
	}
	if err != nil {
		a.log.Warn().Err(err).Msg("some autostart domains did not start")
	}
	return nil
}
