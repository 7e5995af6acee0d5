package qemu

import (
	"context"

	"github.com/vmledger/vmledger/domains"
)

// MigrateLiveTo is MigrateLive as the port the agent's migrate job asks of
// a guest (domains/owner's LiveSource capability), in domains' types.
func (g *Guest) MigrateLiveTo(ctx context.Context, uri string, o domains.LiveMigrateOptions) (domains.MigrationStats, error) {
	lo := LiveOptions{Bandwidth: o.Bandwidth, MaxDowntime: o.MaxDowntime}
	if o.Progress != nil {
		lo.Progress = func(p LiveProgress) { o.Progress(p.port()) }
	}
	r, err := g.MigrateLive(ctx, uri, lo)
	if err != nil {
		return domains.MigrationStats{}, err
	}
	return domains.MigrationStats{MigrationProgress: r.port(), TotalTime: r.TotalTime, Downtime: r.Downtime}, nil
}

func (p LiveProgress) port() domains.MigrationProgress {
	return domains.MigrationProgress{Status: p.Status, Pass: p.Pass, Sent: p.Sent, Remaining: p.Remaining, Total: p.Total, DirtyRate: p.DirtyRate}
}
