package qemu

import (
	"context"
	"fmt"
	"time"

	"github.com/rs/zerolog"
)

// step is one named stage of a multi-stage operation (the shape of
// firecracker-go-sdk's handler lists): do performs it; undo, if set,
// reverses it and runs only when do succeeded and a later step failed.
type step struct {
	name string
	do   func(ctx context.Context) error
	undo func()
}

// runSteps runs steps in order. When one fails, the undos of the steps
// that completed run in reverse order, so every partial start is taken
// apart the way it was built (QEMU killed before its sockets are removed,
// sockets removed before the directory is given up). The error names the
// failing step.
func runSteps(ctx context.Context, log zerolog.Logger, steps []step) error {
	for i, s := range steps {
		t0 := time.Now()
		err := s.do(ctx)
		log.Debug().Str("step", s.name).Dur("took_ms", time.Since(t0)).Err(err).Msg("start step")
		if err == nil {
			continue
		}
		for j := i - 1; j >= 0; j-- {
			if u := steps[j].undo; u != nil {
				log.Debug().Str("step", steps[j].name).Msg("undo start step")
				u()
			}
		}
		return fmt.Errorf("%s: %w", s.name, err)
	}
	return nil
}
