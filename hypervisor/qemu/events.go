package qemu

import (
	"time"

	"github.com/rs/zerolog"

	"github.com/vmledger/vmledger/domains"
	"github.com/vmledger/vmledger/hypervisor/qmp"
)

// eventBuffer decouples the agent from the pump a little. It never decides
// whether QMP's reader blocks: the qmp client queues events without bound,
// so a slow agent only delays delivery.
const eventBuffer = 64

// guestEvent maps a QMP event to a domains.GuestEvent. ok is false for
// events vmledger does not model (POWERDOWN, MIGRATION, ...: the agent
// learns of those through query-status / query-migrate).
func guestEvent(ev qmp.Event) (ge domains.GuestEvent, ok bool, err error) {
	data, err := ev.Decode()
	if err != nil || data == nil {
		return ge, false, err
	}
	ge.Time = ev.Timestamp
	if ge.Time.IsZero() {
		ge.Time = time.Now()
	}
	switch d := data.(type) {
	case qmp.StopEvent:
		ge.Kind = domains.GuestStop
	case qmp.ResumeEvent:
		ge.Kind = domains.GuestResume
	case qmp.ShutdownEvent:
		ge.Kind, ge.Guest, ge.Reason = domains.GuestShutdown, d.Guest, d.Reason
	case qmp.ResetEvent:
		ge.Kind, ge.Guest, ge.Reason = domains.GuestReset, d.Guest, d.Reason
	case qmp.GuestPanickedEvent:
		ge.Kind, ge.Reason = domains.GuestPanicked, d.Action
		if len(d.Info) > 0 {
			ge.Info = string(d.Info)
		}
	case qmp.RTCChangeEvent:
		ge.Kind, ge.Offset = domains.GuestRTCChange, d.Offset
	case qmp.DeviceDeletedEvent:
		ge.Kind, ge.Device, ge.Info = domains.GuestDeviceDeleted, d.Device, d.Path
	case qmp.UnplugErrorEvent:
		ge.Kind, ge.Device, ge.Info = domains.GuestDeviceUnplugError, d.Device, d.Path
	default:
		return ge, false, nil
	}
	return ge, true, nil
}

// pumpEvents translates QMP events into out until the monitor's event
// channel closes (QEMU gone: what it sent before is delivered first) or
// stop closes (Detach). It closes out when it returns.
func pumpEvents(log zerolog.Logger, in <-chan qmp.Event, out chan<- domains.GuestEvent, stop <-chan struct{}) {
	defer close(out)
	for {
		var ev qmp.Event
		var ok bool
		select {
		case ev, ok = <-in:
			if !ok {
				return
			}
		case <-stop:
			return
		}
		ge, ok, err := guestEvent(ev)
		if err != nil {
			// A malformed event is QEMU's bug; the agent re-reads state on
			// every hint anyway, so skipping it loses nothing durable.
			log.Warn().Err(err).Str("event", ev.Name).Msg("qmp event not understood")
			continue
		}
		if !ok {
			continue
		}
		select {
		case out <- ge:
		case <-stop:
			return
		}
	}
}
