package bus

import (
	"context"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/vmledger/vmledger/domains"
)

// Identities with least privilege (docs/bus.md, Identities). The NATS
// server enforces them: a client that may not publish on a subject has its
// message dropped by the server, whatever our client code does.
type Role string

const (
	// RoleAgent publishes events, job progress and console output and
	// answers commands, history and discovery. Nobody else may.
	RoleAgent Role = "agent"
	// RoleOperator may send every command and read events, job progress
	// and history; it may not publish events, answer commands or use
	// consoles.
	RoleOperator Role = "operator"
	// RoleReadOnly may read events, job progress and history and send the
	// read-only verbs; every other command is refused by the server.
	RoleReadOnly Role = "readonly"
	// RoleConsole is an operator that may also read and type into serial
	// consoles (vmledger.console.>), which carry whatever the guest prints.
	RoleConsole Role = "console"
)

// Roles lists every role, in the order the agent creates their keys.
func Roles() []Role { return []Role{RoleAgent, RoleOperator, RoleReadOnly, RoleConsole} }

// InboxPrefix is where a role's replies arrive. One prefix per role, with
// subscribe permission on it alone, keeps a read-only client from reading
// the replies an operator gets.
func (r Role) InboxPrefix() string { return "_INBOX_" + string(r) }

// Permissions is what the server lets role do on host's subjects (host
// "*" for every host, as on the embedded server, which serves one).
// readVerbs are the verbs that change nothing; only they are open to
// RoleReadOnly. The agent has no restriction (nil).
func Permissions(r Role, host string, readVerbs []string) (*server.Permissions, error) {
	root := subjectRoot
	watch := []string{root + ".evt." + host + ".>", root + ".job." + host + ".>"}
	// Discovery ($SRV.PING/INFO/STATS) is harmless to ask; answering it is
	// the agent's, and needs a subscription nobody else has.
	ask := []string{root + ".api." + host + ".history", root + ".api." + host + ".console", "$SRV.>"}
	switch r {
	case RoleAgent:
		return nil, nil
	case RoleReadOnly:
		for _, v := range readVerbs {
			ask = append(ask, CommandSubject(host, v))
		}
		return perms(ask, append(watch, r.InboxPrefix()+".>")), nil
	case RoleOperator:
		return perms(append(ask, commandPrefix(host)+">"), append(watch, r.InboxPrefix()+".>")), nil
	case RoleConsole:
		return perms(append(ask, commandPrefix(host)+">", root+".console."+host+".*.in"),
			append(watch, root+".console."+host+".*.out", r.InboxPrefix()+".>")), nil
	}
	return nil, domains.Errorf(domains.CodeInvalid, "NATS role %s: want one of agent, operator, readonly, console", domains.Quote(string(r)))
}

func perms(pub, sub []string) *server.Permissions {
	return &server.Permissions{
		Publish:   &server.SubjectPermission{Allow: pub},
		Subscribe: &server.SubjectPermission{Allow: sub},
	}
}

// Identity is one role's public nkey, as the server knows it.
type Identity struct {
	Role Role
	// NKey is the user's public key (U...); the seed stays with its holder.
	NKey string
}

// NewSeed makes a user nkey seed (SU...) for an identity file.
func NewSeed() ([]byte, error) {
	kp, err := nkeys.CreateUser()
	if err != nil {
		return nil, fmt.Errorf("create nkey: %w", err)
	}
	return kp.Seed()
}

// PublicKey is the public key of a user seed, checked to be a user key.
func PublicKey(seed []byte) (string, error) {
	kp, err := nkeys.FromSeed(seed)
	if err != nil {
		return "", fmt.Errorf("nkey seed: %w", err)
	}
	pub, err := kp.PublicKey()
	if err != nil {
		return "", fmt.Errorf("nkey seed: %w", err)
	}
	if !nkeys.IsValidPublicUserKey(pub) {
		return "", fmt.Errorf("nkey seed: not a user key")
	}
	return pub, nil
}

// authenticator is the embedded server's client authentication: nkeys
// mapped to roles, and the compatibility token, which gets RoleConsole's
// rights (an operator with consoles), never the agent's. A custom check
// because nats-server cannot give a token permissions of its own.
type authenticator struct {
	users map[string]*server.User // by public nkey
	token string
	tokU  *server.User
}

func newAuthenticator(ids []Identity, token string, tokenRole Role, host string, readVerbs []string, stream string) (*authenticator, error) {
	a := &authenticator{users: map[string]*server.User{}, token: token}
	for _, id := range ids {
		p, err := Permissions(id.Role, host, readVerbs)
		if err != nil {
			return nil, err
		}
		addStreamConsumer(p, stream)
		if !nkeys.IsValidPublicUserKey(id.NKey) {
			return nil, domains.Errorf(domains.CodeInvalid, "identity %s: %s is not a public user nkey", id.Role, domains.Quote(id.NKey))
		}
		a.users[id.NKey] = &server.User{Username: string(id.Role), Permissions: p}
	}
	if tokenRole == "" {
		tokenRole = RoleConsole
	}
	if token != "" {
		p, err := Permissions(tokenRole, host, readVerbs)
		if err != nil {
			return nil, err
		}
		addStreamConsumer(p, stream)
		if p != nil {
			// The token's clients use the default inbox.
			p.Subscribe.Allow = append(p.Subscribe.Allow, "_INBOX.>")
		}
		a.tokU = &server.User{Username: "token", Permissions: p}
	}
	return a, nil
}

// Check implements server.Authentication.
func (a *authenticator) Check(c server.ClientAuthentication) bool {
	if c.Kind() != server.CLIENT {
		return false
	}
	o := c.GetOpts()
	if o.Nkey != "" {
		u := a.users[o.Nkey]
		if u == nil {
			return false
		}
		sig, err := base64.RawURLEncoding.DecodeString(o.Sig)
		if err != nil {
			if sig, err = base64.StdEncoding.DecodeString(o.Sig); err != nil {
				return false
			}
		}
		pub, err := nkeys.FromPublicKey(o.Nkey)
		if err != nil || pub.Verify(c.GetNonce(), sig) != nil {
			return false
		}
		c.RegisterUser(u)
		return true
	}
	if a.tokU != nil && o.Token != "" && subtle.ConstantTimeCompare([]byte(o.Token), []byte(a.token)) == 1 {
		c.RegisterUser(a.tokU)
		return true
	}
	return false
}

// refusals turns the server's asynchronous "Permissions Violation for
// Publish to X" into a fast error for the request waiting on X: the
// server drops the message, so without this the caller would time out.
type refusals struct {
	mu      sync.Mutex
	waiters map[string][]chan error
}

// watchRefusals chains onto nc's error handler.
func watchRefusals(nc *nats.Conn) *refusals {
	r := &refusals{waiters: map[string][]chan error{}}
	prev := nc.ErrorHandler()
	nc.SetErrorHandler(func(nc *nats.Conn, sub *nats.Subscription, err error) {
		if errors.Is(err, nats.ErrPermissionViolation) {
			r.notify(err)
		}
		if prev != nil {
			prev(nc, sub, err)
		}
	})
	return r
}

func (r *refusals) notify(err error) {
	msg := err.Error()
	const pub = "Publish to \""
	i := strings.Index(msg, pub)
	if i < 0 {
		return
	}
	subj, _, _ := strings.Cut(msg[i+len(pub):], "\"")
	r.mu.Lock()
	ws := r.waiters[subj]
	delete(r.waiters, subj)
	r.mu.Unlock()
	for _, w := range ws {
		w <- err
	}
}

// watch returns a channel that gets the server's refusal of subject, and
// a function to stop watching.
func (r *refusals) watch(subject string) (<-chan error, func()) {
	ch := make(chan error, 1)
	r.mu.Lock()
	r.waiters[subject] = append(r.waiters[subject], ch)
	r.mu.Unlock()
	return ch, func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		ws := r.waiters[subject]
		for i, w := range ws {
			if w == ch {
				r.waiters[subject] = append(ws[:i:i], ws[i+1:]...)
				break
			}
		}
		if len(r.waiters[subject]) == 0 {
			delete(r.waiters, subject)
		}
	}
}

// requestRefusable is RequestMsgWithContext that ends as soon as the
// server refuses the request's subject.
func (r *refusals) request(ctx context.Context, nc *nats.Conn, m *nats.Msg) (*nats.Msg, error) {
	refused, stop := r.watch(m.Subject)
	defer stop()
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	go func() {
		select {
		case err := <-refused:
			cancel(err)
		case <-ctx.Done():
		}
	}()
	rm, err := nc.RequestMsgWithContext(ctx, m)
	if err != nil {
		if cause := context.Cause(ctx); errors.Is(cause, nats.ErrPermissionViolation) {
			return nil, domains.Errorf(domains.CodeInvalid,
				"%s: refused by the NATS server: this identity may not send it (%w)", m.Subject, cause)
		}
	}
	return rm, err
}

// ServerConfig renders, in nats-server's configuration syntax, an
// authorization block giving each identity its role's rights on host's
// subjects: what an external server needs to enforce what the embedded
// one does (docs/bus.md, Identities).
func ServerConfig(host string, ids []Identity, readVerbs []string) (string, error) {
	if err := checkToken("host", host); err != nil {
		return "", err
	}
	var b strings.Builder
	b.WriteString("authorization {\n  users = [\n")
	for _, id := range ids {
		p, err := Permissions(id.Role, host, readVerbs)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(&b, "    # %s\n    { nkey: %q", id.Role, id.NKey)
		if p != nil {
			fmt.Fprintf(&b, ",\n      permissions: {\n        publish: { allow: %s }\n        subscribe: { allow: %s }\n      }\n    ", quoteList(p.Publish.Allow), quoteList(p.Subscribe.Allow))
		} else {
			b.WriteString(" ")
		}
		b.WriteString("}\n")
	}
	b.WriteString("  ]\n}\n")
	return b.String(), nil
}

func quoteList(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = fmt.Sprintf("%q", s)
	}
	return "[" + strings.Join(q, ", ") + "]"
}
