package bus

import (
	"context"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go/micro"

	"github.com/vmledger/vmledger/domains"
)

// Agent-to-agent verbs (docs/bus.md, "Agent-to-agent verbs"): what one
// agent sends another, such as the destination side of a live migration.
// They travel on vmledger.peer.<host>.<verb>, a subject space of their own
// that no role but the agent may publish to, so the NATS server, not a
// check of ours, keeps operators from sending them. A prefix of its own
// rather than a token under vmledger.cmd: the operator's allow
// vmledger.cmd.<host>.> covers every token below it.

// PeerSubject is the request subject of one agent-to-agent verb.
func PeerSubject(host, verb string) string { return subjectRoot + ".peer." + host + "." + verb }

// CallPeer is Call for an agent-to-agent verb (CommandOptions.PeerVerbs).
// Only an agent identity may send it; any other gets a fast invalid
// error wrapping nats.ErrPermissionViolation from the server's refusal.
func (c *Client) CallPeer(ctx context.Context, verb string, req, resp any) error {
	if err := checkToken("verb", verb); err != nil {
		return err
	}
	return c.call(ctx, PeerSubject(c.host, verb), verb, req, resp)
}

// checkPeerVerbs validates o.PeerVerbs against each other and o.Verbs.
func (s *CommandService) checkPeerVerbs() error {
	s.peer = map[string]bool{}
	for _, v := range s.o.PeerVerbs {
		if err := checkToken("verb", v); err != nil {
			return err
		}
		if s.known[v] || s.peer[v] {
			return domains.Errorf(domains.CodeInvalid, "verb %q listed twice", v)
		}
		s.peer[v] = true
		s.stats[v] = &verbStats{}
	}
	return nil
}

// addPeerEndpoints serves each peer verb on its peer subject only.
func (s *CommandService) addPeerEndpoints(svc micro.Service) error {
	for _, verb := range s.o.PeerVerbs {
		if err := s.addEndpoint(svc, verb, PeerSubject(s.o.Host, verb)); err != nil {
			return err
		}
	}
	return nil
}

// addEndpoint serves verb on subject through dispatch.
func (s *CommandService) addEndpoint(svc micro.Service, verb, subject string) error {
	err := svc.AddEndpoint(verb, micro.HandlerFunc(func(r micro.Request) {
		if !replyAllowed(r.Reply()) {
			refuseReply(s.log, verb, r.Reply()) // before the handler runs
			return
		}
		s.dispatch(verb, r.Data(), r.Reply(), r.Headers().Get(HeaderTimeout))
	}), micro.WithEndpointSubject(subject),
		micro.WithEndpointMetadata(map[string]string{"schema_version": APISchemaVersion, "subject": subject}))
	if err != nil {
		return fmt.Errorf("endpoint %q: %w", verb, err)
	}
	return nil
}

// notServed is the answer to verb on the command subject, where no
// endpoint serves it: a peer verb is refused there (an operator can
// publish on vmledger.cmd.<host>.>, so serving it there would undo the
// server's permissions), any other verb is unknown.
func (s *CommandService) notServed(verb string) error {
	if s.peer[verb] {
		return domains.Errorf(domains.CodeInvalid,
			"verb %s is sent agent to agent only (on %s, which only agent identities may publish to), not on the command subject",
			domains.Quote(verb), PeerSubject(s.o.Host, verb))
	}
	return domains.Errorf(domains.CodeInvalid,
		"unknown verb %s: this agent serves %s", domains.Quote(verb), strings.Join(s.o.Verbs, ", "))
}
