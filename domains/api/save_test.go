package api_test

import (
	"context"
	"errors"
	"testing"

	"github.com/google/uuid"

	"github.com/vmledger/vmledger/domains"
	"github.com/vmledger/vmledger/domains/api"
)

// saveSvc records the save verbs that reach the service.
type saveSvc struct {
	api.Service
	calls *[]string
}

func (s saveSvc) Save(_ context.Context, _, ref string, o domains.SaveOptions) (domains.Result, error) {
	*s.calls = append(*s.calls, "save "+ref+" "+o.Path+" "+o.Compression)
	return domains.Result{Job: "j"}, nil
}

func (s saveSvc) ManagedSave(_ context.Context, _, ref string, _ domains.SaveOptions) (domains.Result, error) {
	*s.calls = append(*s.calls, "managedsave "+ref)
	return domains.Result{Job: "j"}, nil
}

func (s saveSvc) ManagedSaveRemove(_ context.Context, _, ref string) (domains.Result, error) {
	*s.calls = append(*s.calls, "managedsave-remove "+ref)
	return domains.Result{}, nil
}

func (s saveSvc) Restore(_ context.Context, _ string, o domains.RestoreOptions) (domains.Result, error) {
	*s.calls = append(*s.calls, "restore "+o.Path)
	return domains.Result{Job: "j"}, nil
}

func (s saveSvc) HasManagedSave(uuid.UUID) bool { return false }

// The save verbs decode strictly and check what each takes before the
// service sees the request; well-formed ones reach it as given.
func TestSaveVerbs(t *testing.T) {
	var calls []string
	h := api.Handler{Svc: saveSvc{calls: &calls}}
	ctx := context.Background()
	for _, c := range []struct{ verb, body string }{
		{api.VerbSave, `{"domain":"web1"}`},
		{api.VerbSave, `{"path":"/x"}`},
		{api.VerbSave, `{"domain":"web1","path":"/x","PATH":"/y"}`},
		{api.VerbSave, `{"domain":"web1","path":"/x","compress":"zstd"}`},
		{api.VerbRestore, `{}`},
		{api.VerbRestore, `{"path":"/x","domain":"web1"}`},
		{api.VerbManagedSave, `{"domain":"web1","path":"/x"}`},
		{api.VerbManagedSaveRemove, `{"domain":"web1","running":true}`},
		{api.VerbManagedSaveRemove, `{}`},
		{api.VerbDestroy, `{"domain":"web1","force_boot":true}`},
	} {
		if _, err := h.Handle(ctx, c.verb, []byte(c.body)); !errors.Is(err, domains.ErrInvalid) {
			t.Errorf("%s %s: %v, want invalid", c.verb, c.body, err)
		}
	}
	if len(calls) != 0 {
		t.Fatalf("refused requests reached the service: %v", calls)
	}
	for _, c := range []struct{ verb, body string }{
		{api.VerbSave, `{"domain":"web1","path":"/i/a.save","compression":"snappy"}`},
		{api.VerbRestore, `{"path":"/i/a.save","paused":true}`},
		{api.VerbManagedSave, `{"domain":"web1"}`},
		{api.VerbManagedSaveRemove, `{"domain":"web1"}`},
	} {
		if _, err := h.Handle(ctx, c.verb, []byte(c.body)); err != nil {
			t.Errorf("%s %s: %v", c.verb, c.body, err)
		}
	}
	want := []string{"save web1 /i/a.save snappy", "restore /i/a.save", "managedsave web1", "managedsave-remove web1"}
	if len(calls) != len(want) {
		t.Fatalf("calls %v, want %v", calls, want)
	}
	for i := range want {
		if calls[i] != want[i] {
			t.Fatalf("calls %v, want %v", calls, want)
		}
	}
}
