package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/vmledger/vmledger/bus"
	"github.com/vmledger/vmledger/domains"
)

func addJSON(cmd *cobra.Command, g *globals) {
	cmd.Flags().BoolVar(&g.json, "json", false, "print JSON")
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func newTable(w io.Writer) *tabwriter.Writer { return tabwriter.NewWriter(w, 0, 4, 2, ' ', 0) }

func printInfo(w io.Writer, d domains.Domain) {
	t := newTable(w)
	c := d.LiveConfig() // what runs; the next start's differences follow
	fmt.Fprintf(t, "Name:\t%s\n", c.Name)
	fmt.Fprintf(t, "UUID:\t%s\n", c.UUID)
	st := string(d.State)
	if d.Reason != "" {
		st += " (" + d.Reason + ")"
	}
	fmt.Fprintf(t, "State:\t%s\n", st)
	fmt.Fprintf(t, "Memory:\t%d MiB\n", c.MemoryMiB)
	fmt.Fprintf(t, "vCPUs:\t%d\n", c.VCPUs)
	fmt.Fprintf(t, "Machine:\t%s\n", c.Machine)
	clock := c.Clock.Offset
	if c.Clock.Offset == domains.OffsetVariable {
		clock = fmt.Sprintf("variable, adjustment %+ds, basis %s", c.Clock.Adjustment, c.Clock.Basis)
	}
	fmt.Fprintf(t, "Clock:\t%s\n", clock)
	if l := d.Live; l != nil {
		fmt.Fprintf(t, "Accelerator:\t%s\n", l.Accel)
		fmt.Fprintf(t, "PID:\t%d\n", l.PID)
		fmt.Fprintf(t, "Started:\t%s\n", fmtTime(l.Started))
		fmt.Fprintf(t, "RTC adjustment:\t%+ds\n", l.RTC)
		if len(l.Taints) > 0 {
			fmt.Fprintf(t, "Tainted:\t%s (qemu-monitor-command)\n", strings.Join(l.Taints, ", "))
		}
	}
	if d.Autostart {
		fmt.Fprintf(t, "Autostart:\tyes\n")
	}
	for _, dev := range d.Devices() { // the live device set
		kind := dev.Kind
		if kind == "" {
			kind = "device"
		}
		fmt.Fprintf(t, "Device:\t%s (%s): %s\n", dev.ID, kind, dev.State)
	}
	for _, ch := range d.PendingChanges() {
		fmt.Fprintf(t, "Next start:\t%s %s (running: %s)\n", ch.Field, ch.Next, ch.Running)
	}
	if j := d.Job; j != nil {
		fmt.Fprintf(t, "Job:\t%s %s (since %s; vmledger job info)\n", j.Kind, j.ID, fmtTime(j.Started))
	}
	if m := d.Migration; m != nil {
		owner := "owned here"
		if !d.OwnedHere() {
			owner = "not owned here"
		}
		fmt.Fprintf(t, "Migration:\t%s %s, peer %s, epoch %d (%s)\n", m.Role, m.Phase, m.Peer, m.Epoch, owner)
	}
	fmt.Fprintf(t, "Version:\t%d\n", d.Version)
	fmt.Fprintf(t, "Last seq:\t%d\n", d.LastSeq)
	_ = t.Flush()
}

// printEvent prints one event as a line: sequence, time, domain name and
// UUID, version, type, payload.
func printEvent(w io.Writer, e domains.Event, name string) {
	var p []byte
	if t, ok := e.Payload.(bus.Truncated); ok {
		// An event too large for the bus (an older log): say so where the
		// payload would be, with what it was.
		p = fmt.Appendf(nil, "<truncated: %d bytes, over the bus's max payload of %d; `vmledger log export` has it>", t.Bytes, t.MaxPayload)
	} else {
		p, _ = json.Marshal(e.Payload)
	}
	fmt.Fprintf(w, "%d\t%s\t%s\t%s\tv%d\t%s\t%s\n", e.Seq, fmtTime(e.Time), name, e.Domain, e.Version, e.Type, p)
}

func stderrOf() io.Writer { return os.Stderr }
