package api_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/vmledger/vmledger/domains"
	"github.com/vmledger/vmledger/domains/api"
)

// jobSvc answers job-info and job-abort for domain "web" only.
type jobSvc struct {
	api.Service // nil: any other method panics, which the test would notice
	job         *domains.JobInfo
	aborted     int
}

func (s *jobSvc) JobInfo(ref string) (*domains.JobInfo, error) {
	if ref != "web" {
		return nil, domains.Errorf(domains.CodeNotFound, "domain %q not found", ref)
	}
	return s.job, nil
}

func (s *jobSvc) AbortJob(ctx context.Context, ref string) (domains.JobInfo, error) {
	s.aborted++
	if s.job == nil {
		return domains.JobInfo{}, domains.Errorf(domains.CodeNotFound, "domain %q has no job running", ref)
	}
	return *s.job, nil
}

func TestHandlerJobVerbs(t *testing.T) {
	ctx := context.Background()
	svc := &jobSvc{}
	h := api.Handler{Svc: svc}
	out, err := h.Handle(ctx, api.VerbJobInfo, []byte(`{"domain":"web"}`))
	if b, _ := json.Marshal(out); err != nil || string(b) != `{"job":null}` {
		t.Fatalf("job-info without a job: %s %v", b, err)
	}
	svc.job = &domains.JobInfo{ID: "j1", Kind: domains.JobSave, Async: true}
	out, err = h.Handle(ctx, api.VerbJobInfo, []byte(`{"domain":"web"}`))
	if r, ok := out.(api.JobReply); err != nil || !ok || r.Job.ID != "j1" {
		t.Fatalf("job-info: %+v %v", out, err)
	}
	if out, err := h.Handle(ctx, api.VerbJobAbort, []byte(`{"domain":"web"}`)); err != nil || out.(domains.JobInfo).ID != "j1" {
		t.Fatalf("job-abort: %+v %v", out, err)
	}
	for _, body := range []string{`{}`, `{"domain":"web","paused":true}`, `{"domain":"web","command_id":"c1"}`, `{"domain":"web","at":"3"}`, `{"domain":"web","x":1}`} {
		for _, verb := range []string{api.VerbJobInfo, api.VerbJobAbort} {
			if _, err := h.Handle(ctx, verb, []byte(body)); domains.CodeOf(err) != domains.CodeInvalid {
				t.Errorf("%s %s: %v, want invalid", verb, body, err)
			}
		}
	}
	if svc.aborted != 1 {
		t.Fatalf("AbortJob called %d times; refused requests must not reach it", svc.aborted)
	}
}
