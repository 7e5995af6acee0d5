package agent

import (
	"context"
	"errors"
	"fmt"

	"github.com/rs/zerolog"
)

// step is one named part of start-up with the undo that reverses it. On a
// failure, the undos of the steps already done run in reverse order; on a
// clean stop they run the same way.
type step struct {
	name string
	do   func(ctx context.Context) error
	undo func(ctx context.Context) error
}

type steps struct {
	log  zerolog.Logger
	done []step
}

func (s *steps) run(ctx context.Context, all ...step) error {
	for _, st := range all {
		s.log.Debug().Str("step", st.name).Msg("starting")
		if err := st.do(ctx); err != nil {
			return fmt.Errorf("%s: %w", st.name, err)
		}
		s.done = append(s.done, st)
	}
	return nil
}

// unwind undoes every completed step, newest first, and reports all errors.
func (s *steps) unwind(ctx context.Context) error {
	var errs []error
	for i := len(s.done) - 1; i >= 0; i-- {
		st := s.done[i]
		if st.undo == nil {
			continue
		}
		s.log.Debug().Str("step", st.name).Msg("undoing")
		if err := st.undo(ctx); err != nil {
			errs = append(errs, fmt.Errorf("undo %s: %w", st.name, err))
		}
	}
	s.done = nil
	return errors.Join(errs...)
}
