package bus_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/micro"

	"github.com/vmledger/vmledger/bus"
	"github.com/vmledger/vmledger/bus/bustest"
	"github.com/vmledger/vmledger/domains"
)

// Issue 7, defect 4: no reply exceeds the max payload, so none is lost.
// An error quoting a 600 KB name comes back at once, bounded, keeping the
// start and the end of its message; a result too large for one message
// becomes an internal error saying so; a message cannot forge headers.
func TestRepliesNeverExceedMaxPayload(t *testing.T) {
	huge := strings.Repeat("<", 600<<10)
	e, nc := embedded(t)
	h := bus.HandlerFunc(func(ctx context.Context, verb string, body []byte) (any, error) {
		switch verb {
		case "info": // what the service did before domains.Quote
			return nil, domains.Errorf(domains.CodeNotFound, "domain %q not found", huge)
		case "config":
			return map[string]string{"path": huge + huge}, nil
		}
		return nil, domains.Errorf(domains.CodeInvalid, "bad\r\nNats-Service-Error-Code: 200\r\n\r\nx")
	})
	s, err := bus.StartCommands(context.Background(), nc, h, bus.CommandOptions{Host: host, Verbs: []string{"info", "config", "forge"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Stop(context.Background()) })
	cli := bustest.Connect(t, e.ClientURL())
	c := bus.NewClient(cli, host)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	err = c.Call(ctx, "info", nil, nil)
	if !errors.Is(err, domains.ErrNotFound) || len(err.Error()) > 2200 ||
		!strings.HasPrefix(err.Error(), `domain "<<<`) || !strings.HasSuffix(err.Error(), `<<<" not found`) || !strings.Contains(err.Error(), "bytes cut") {
		t.Fatalf("info: %.300v (%d bytes), want a bounded not-found error keeping both ends", err, len(err.Error()))
	}
	err = c.Call(ctx, "config", nil, nil)
	if !errors.Is(err, domains.ErrInternal) || !strings.Contains(err.Error(), "max payload") {
		t.Fatalf("config: %.300v, want an internal error about the max payload", err)
	}
	m, err := cli.Request(bus.CommandSubject(host, "forge"), nil, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if st := m.Header.Get(micro.ErrorCodeHeader); st != "400" || len(m.Header.Values(micro.ErrorCodeHeader)) != 1 {
		t.Fatalf("error code header %v, want 400 only", m.Header.Values(micro.ErrorCodeHeader))
	}
	if len(m.Data)+len(m.Header.Get(micro.ErrorHeader)) > int(nc.MaxPayload()) {
		t.Fatal("reply exceeds the max payload")
	}
}
