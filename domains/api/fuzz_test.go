package api_test

import (
	"context"
	"errors"
	"testing"

	"github.com/google/uuid"

	"github.com/vmledger/vmledger/domains"
	"github.com/vmledger/vmledger/domains/api"
)

// countingSvc implements every service method the handler may call and
// counts the calls; it answers with zero values, so the handler's own
// checks are all that stand between a body and the service.
type countingSvc struct{ calls *int }

func (s countingSvc) hit() (domains.Result, error) { *s.calls++; return domains.Result{}, nil }

func (s countingSvc) Define(context.Context, string, domains.Config) (domains.Result, error) {
	return s.hit()
}
func (s countingSvc) Undefine(context.Context, string, string) (domains.Result, error) {
	return s.hit()
}
func (s countingSvc) Start(context.Context, string, string, domains.StartOptions) (domains.Result, error) {
	return s.hit()
}
func (s countingSvc) Shutdown(context.Context, string, string) (domains.Result, error) {
	return s.hit()
}
func (s countingSvc) Destroy(context.Context, string, string) (domains.Result, error) {
	return s.hit()
}
func (s countingSvc) Suspend(context.Context, string, string) (domains.Result, error) {
	return s.hit()
}
func (s countingSvc) Resume(context.Context, string, string) (domains.Result, error) {
	return s.hit()
}
func (s countingSvc) Reset(context.Context, string, string) (domains.Result, error) { return s.hit() }
func (s countingSvc) AttachDevice(context.Context, string, string, domains.DeviceSpec, domains.DeviceOptions) (domains.Result, error) {
	return s.hit()
}
func (s countingSvc) DetachDevice(context.Context, string, string, string, domains.DeviceOptions) (domains.Result, error) {
	return s.hit()
}
func (s countingSvc) JobInfo(string) (*domains.JobInfo, error) { *s.calls++; return nil, nil }
func (s countingSvc) AbortJob(context.Context, string) (domains.JobInfo, error) {
	*s.calls++
	return domains.JobInfo{}, nil
}
func (s countingSvc) List() []domains.Domain             { *s.calls++; return nil }
func (s countingSvc) Get(string) (domains.Domain, error) { *s.calls++; return domains.Domain{}, nil }
func (s countingSvc) LastSeq() uint64                    { return 0 }
func (s countingSvc) Save(context.Context, string, string, domains.SaveOptions) (domains.Result, error) {
	return s.hit()
}
func (s countingSvc) ManagedSave(context.Context, string, string, domains.SaveOptions) (domains.Result, error) {
	return s.hit()
}
func (s countingSvc) ManagedSaveRemove(context.Context, string) (domains.Result, error) {
	return s.hit()
}
func (s countingSvc) Restore(context.Context, string, domains.RestoreOptions) (domains.Result, error) {
	return s.hit()
}
func (s countingSvc) HasManagedSave(uuid.UUID) bool { return false }
func (s countingSvc) Dump(context.Context, string, string, domains.DumpOptions) (domains.Result, error) {
	return s.hit()
}

// FuzzHandle: for every verb (the first byte picks it), no body makes
// the handler panic; a refused body is refused as invalid (or, for
// "at", unavailable: this handler has no log), with a bounded message,
// before the service is called; an accepted one reaches the service.
func FuzzHandle(f *testing.F) {
	for i, body := range []string{
		`{"config":{"name":"a","memory_mib":16}}`, `{"domain":"a"}`, `{}`, `{"domain":"a","at":"5"}`,
		`{"domain":"a","live":true}`, `{"domain":"a","paused":true,"force_boot":true}`, `{"domain":"a"}`,
		`{"domain":"a","command_id":"x"}`, `{"domain":"a"}`, `{"domain":"a"}`, `{"domain":"a"}`, `{"domain":"a"}`,
		`{"domain":"a"}`, `{"domain":"a","path":"/x","compression":"snappy","running":true}`,
		`{"path":"/x","paused":true}`, `{"domain":"a"}`, `{"domain":"a"}`,
		`{"domain":"a","spec":{"id":"d","driver":"virtio-net-pci"}}`, `{"domain":"a","id":"d","options":{"timeout":1}}`,
		`{"domain":"a","path":"/x","format":"kdump-zstd","flattened":true,"after":"live"}`,
	} {
		f.Add(uint8(i), []byte(body))
	}
	f.Add(uint8(0), []byte(`{"config":{"name":"a"},"config":{}}`))
	f.Add(uint8(2), []byte(`{"state":"running"} x`))
	verbs := append(api.Verbs(), api.PeerVerbs()...)
	f.Fuzz(func(t *testing.T, v uint8, body []byte) {
		verb := verbs[int(v)%len(verbs)]
		var calls int
		h := api.Handler{Svc: countingSvc{calls: &calls}}
		_, err := h.Handle(context.Background(), verb, body)
		if err == nil {
			if calls == 0 {
				t.Fatalf("%s accepted %q without calling the service", verb, body)
			}
			return
		}
		if !errors.Is(err, domains.ErrInvalid) && !errors.Is(err, domains.ErrUnavailable) {
			t.Fatalf("%s %q: error not invalid: %v", verb, body, err)
		}
		if errors.Is(err, domains.ErrInvalid) && calls != 0 {
			t.Fatalf("%s %q: refused as invalid after %d service calls", verb, body, calls)
		}
		if len(err.Error()) > 2048 {
			t.Fatalf("%s: error of %d bytes", verb, len(err.Error()))
		}
	})
}
