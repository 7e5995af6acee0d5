package api_test

import (
	"context"
	"testing"

	"github.com/vmledger/vmledger/domains"
	"github.com/vmledger/vmledger/domains/api"
)

// dumpSvc is a Service with a Dump that records what it was asked.
type dumpSvc struct {
	api.Service
	got *domains.DumpOptions
}

func (d dumpSvc) Dump(_ context.Context, _, ref string, o domains.DumpOptions) (domains.Result, error) {
	*d.got = o
	return domains.Result{Name: ref, Job: "j1"}, nil
}

// The dump verb decodes strictly and hands its options over as given; a
// service without Dump answers unavailable.
func TestHandlerDump(t *testing.T) {
	var got domains.DumpOptions
	h := api.Handler{Svc: dumpSvc{got: &got}}
	for _, tc := range []struct {
		body string
		code domains.Code
	}{
		{`{"domain":"web","path":"/i/x","format":"elf","after":"crash"}`, ""},
		{`{"domain":"web","path":"/i/x","format":"elf","Format":"kdump-zstd"}`, domains.CodeInvalid},
		{`{"domain":"web","path":"/i/x","format":"elf","live":true}`, domains.CodeInvalid},
		{`{"path":"/i/x","format":"elf"}`, domains.CodeInvalid},
	} {
		got = domains.DumpOptions{}
		_, err := h.Handle(context.Background(), api.VerbDump, []byte(tc.body))
		if (tc.code == "") != (err == nil) || err != nil && domains.CodeOf(err) != tc.code {
			t.Fatalf("%s: error %v, want code %q", tc.body, err, tc.code)
		}
		if tc.code == "" && (got.Path != "/i/x" || got.Format != "elf" || got.After != domains.DumpCrash) {
			t.Fatalf("%s: the service got %+v", tc.body, got)
		}
	}
	_, err := api.Handler{Svc: nil}.Handle(context.Background(), api.VerbDump, []byte(`{"domain":"web","path":"/x","format":"elf"}`))
	if domains.CodeOf(err) != domains.CodeUnavailable {
		t.Fatalf("no Dump: %v, want unavailable", err)
	}
}
