package store

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"

	"github.com/vmledger/vmledger/domains"
)

// Export writes every event of s, in sequence order, to w as JSON Lines:
// one domains.Event JSON object (docs/events.md) per line. Older payloads
// are upcast on the way, so an export carries current-schema events only.
//
// It reads through Replay (short read transactions), so it works on a
// store opened read-only with no agent, and on a live one (it stops at the
// last sequence committed when it started). The command table and the
// snapshots are not exported: they are not facts, and Import cannot
// rebuild the command results anyway (docs/replay.md).
func Export(ctx context.Context, s *Store, w io.Writer) error {
	bw := bufio.NewWriterSize(w, 256<<10)
	err := s.Replay(ctx, 0, func(e domains.Event) error {
		b, err := json.Marshal(e)
		if err != nil {
			return fmt.Errorf("encode seq %d: %w", e.Seq, err)
		}
		b = append(b, '\n')
		_, err = bw.Write(b)
		return err
	})
	if err != nil {
		return fmt.Errorf("store: export %s: %w", s.path, err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("store: export %s: %w", s.path, err)
	}
	return nil
}
