package api_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/vmledger/vmledger/domains"
	"github.com/vmledger/vmledger/domains/api"
)

// recordingSvc records what reaches the service.
type recordingSvc struct {
	api.Service // nil: any other method panics, which the test would notice
	defines     *[]domains.Config
	refs        *[]string
}

func (s recordingSvc) Define(_ context.Context, _ string, cfg domains.Config) (domains.Result, error) {
	*s.defines = append(*s.defines, cfg)
	return domains.Result{}, nil
}

func (s recordingSvc) Destroy(_ context.Context, _ string, ref string) (domains.Result, error) {
	*s.refs = append(*s.refs, ref)
	return domains.Result{}, nil
}

// Commands on the wire are decoded strictly: a key in another case, a key
// given twice, trailing data and an explicit all-zero UUID are refused as
// invalid before the service sees them (issue 7, defect 10).
func TestHandlerDecodesStrictly(t *testing.T) {
	var defines []domains.Config
	var refs []string
	h := api.Handler{Svc: recordingSvc{defines: &defines, refs: &refs}}
	ctx := context.Background()
	const cfg = `"memory_mib":16,"vcpus":1,"clock":{"offset":"utc"}`
	for _, c := range []struct{ verb, body string }{
		{api.VerbDefine, `{"config":{"name":"a","NAME":"b",` + cfg + `}}`},
		{api.VerbDefine, `{"config":{"name":"a","name":"b",` + cfg + `}}`},
		{api.VerbDefine, `{"Config":{"name":"a",` + cfg + `}}`},
		{api.VerbDefine, `{"config":{"name":"a",` + cfg + `},"config":{"name":"b",` + cfg + `}}`},
		{api.VerbDefine, `{"config":{"name":"a","uuid":"00000000-0000-0000-0000-000000000000",` + cfg + `}}`},
		{api.VerbDefine, `{"config":{"name":"a",` + cfg + `}} {}`},
		{api.VerbDefine, `{"config":null}`},
		{api.VerbDefine, `{}`},
		{api.VerbDestroy, `{"domain":"web1","DOMAIN":"db1"}`},
		{api.VerbDestroy, `{"domain":"web1","domain":"db1"}`},
		{api.VerbDestroy, `{"Domain":"web1"}`},
		{api.VerbDestroy, `{"domain":"` + strings.Repeat("x", 700000) + `","` + strings.Repeat("y", 700000) + `":1}`},
	} {
		_, err := h.Handle(ctx, c.verb, []byte(c.body))
		if !errors.Is(err, domains.ErrInvalid) || len(err.Error()) > 1024 {
			t.Errorf("%s %.120s: %.300v (%d bytes); want a short invalid error", c.verb, c.body, err, len(errText(err)))
		}
	}
	if len(defines) != 0 || len(refs) != 0 {
		t.Fatalf("refused requests reached the service: %v %v", defines, refs)
	}
	id := uuid.New()
	if _, err := h.Handle(ctx, api.VerbDefine, []byte(`{"command_id":"c","config":{"name":"a","uuid":"`+id.String()+`",`+cfg+`}}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Handle(ctx, api.VerbDefine, []byte(`{"config":{"name":"b",`+cfg+`}}`)); err != nil {
		t.Fatal(err)
	}
	if len(defines) != 2 || defines[0].UUID != id || defines[1].UUID != uuid.Nil || defines[1].Name != "b" {
		t.Fatalf("defines: %+v", defines)
	}
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// FuzzHandlerDefine: no body makes the handler panic, and whatever the
// handler passes to the service was a body the strict decoder accepts.
func FuzzHandlerDefine(f *testing.F) {
	f.Add([]byte(`{"config":{"name":"a","memory_mib":16}}`))
	f.Add([]byte(`{"config":{"name":"a","NAME":"b"}}`))
	f.Add([]byte(`{"command_id":"x","config":{"uuid":"00000000-0000-0000-0000-000000000000"}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		var defines []domains.Config
		h := api.Handler{Svc: recordingSvc{defines: &defines, refs: new([]string)}}
		_, err := h.Handle(context.Background(), api.VerbDefine, body)
		if err != nil && !errors.Is(err, domains.ErrInvalid) {
			t.Fatalf("non-invalid error for bad input: %v", err)
		}
		if err == nil && len(defines) != 1 {
			t.Fatalf("accepted, but %d defines", len(defines))
		}
		if err != nil && len(err.Error()) > 2048 {
			t.Fatalf("error of %d bytes", len(err.Error()))
		}
	})
}
