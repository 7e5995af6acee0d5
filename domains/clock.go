package domains

import "time"

// ClockBase is the RTC offset from UTC, in seconds, that a guest with clock
// k starts with at host time now (whose zone is the host's). It is
// libvirt's "adjustment0": QEMU's RTC_CHANGE offsets are relative to it.
//
//	utc       → 0
//	localtime → the host's UTC offset now
//	variable  → adjustment, plus the host's UTC offset when basis=localtime
func ClockBase(k Clock, now time.Time) int64 {
	_, zone := now.Zone()
	switch k.Offset {
	case OffsetLocaltime:
		return int64(zone)
	case OffsetVariable:
		if k.Basis == BasisLocaltime {
			return k.Adjustment + int64(zone)
		}
		return k.Adjustment
	}
	return 0
}

// RTCAdjustment is the absolute adjustment after QEMU reported offset for
// a guest started with base: base + offset, never offset alone (libvirt
// once recorded the bare offset and lost the start adjustment).
func RTCAdjustment(base, offset int64) int64 { return base + offset }
