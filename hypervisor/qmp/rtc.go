package qmp

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Where the RTC lives in QOM, verified against QEMU 7.2 (pc, q35, isapc, and
// microvm with rtc=on): the machine has a "rtc-time" alias of the
// mc146818rtc's "date" property. The device itself sits at an index under
// /machine/unattached that differs per machine type (device[10] on pc,
// device[9] on q35), so its path is never hard-coded; as a fallback the
// machine's "rtc_state" link names it.
const (
	machinePath     = "/machine"
	machineRTCAlias = "rtc-time"
	machineRTCLink  = "rtc_state"
	rtcDateProp     = "date"
)

// rtcTM is QEMU's "struct tm" QOM type. Pointers catch missing members.
type rtcTM struct {
	Year *int `json:"tm_year"` // years since 1900
	Mon  *int `json:"tm_mon"`  // 0-11
	Mday *int `json:"tm_mday"` // 1-31
	Hour *int `json:"tm_hour"`
	Min  *int `json:"tm_min"`
	Sec  *int `json:"tm_sec"`
}

// RTCTime reads the guest's RTC (the CMOS clock's current date and time).
//
// The RTC has no time zone: its fields are the wall clock the guest sees,
// UTC with -rtc base=utc, local time with base=localtime. They are returned
// in a time.Time with location UTC; interpreting them is the caller's job.
func (c *Client) RTCTime(ctx context.Context) (time.Time, error) {
	var tm rtcTM
	err := c.QOMGet(ctx, machinePath, machineRTCAlias, &tm)
	var qerr *Error
	if errors.As(err, &qerr) {
		// An older or unusual machine may lack the alias; follow the link.
		if fbErr := c.rtcViaLink(ctx, &tm); fbErr != nil {
			return time.Time{}, fmt.Errorf("qmp: no RTC found: %w (fallback: %w)", err, fbErr)
		}
		err = nil
	}
	if err != nil {
		return time.Time{}, err
	}
	return tm.time()
}

func (c *Client) rtcViaLink(ctx context.Context, tm *rtcTM) error {
	var path string
	if err := c.QOMGet(ctx, machinePath, machineRTCLink, &path); err != nil {
		return err
	}
	if path == "" {
		return errors.New("qmp: machine has no RTC linked")
	}
	return c.QOMGet(ctx, path, rtcDateProp, tm)
}

func (tm rtcTM) time() (time.Time, error) {
	fields := []struct {
		name     string
		v        *int
		min, max int
	}{
		{"tm_year", tm.Year, 0, 8099}, // year 1900..9999
		{"tm_mon", tm.Mon, 0, 11},
		{"tm_mday", tm.Mday, 1, 31},
		{"tm_hour", tm.Hour, 0, 23},
		{"tm_min", tm.Min, 0, 59},
		{"tm_sec", tm.Sec, 0, 60}, // struct tm allows a leap second
	}
	for _, f := range fields {
		if f.v == nil {
			return time.Time{}, fmt.Errorf("qmp: RTC date: missing %s", f.name)
		}
		if *f.v < f.min || *f.v > f.max {
			return time.Time{}, fmt.Errorf("qmp: RTC date: %s=%d out of range [%d, %d]", f.name, *f.v, f.min, f.max)
		}
	}
	return time.Date(1900+*tm.Year, time.Month(*tm.Mon+1), *tm.Mday,
		*tm.Hour, *tm.Min, *tm.Sec, 0, time.UTC), nil
}
