package domains

import (
	"encoding/json"
	"fmt"
	"sort"
	"time"

	"github.com/google/uuid"
)

// Domain is the projection of one domain's events.
type Domain struct {
	Config  Config    `json:"config"`
	State   State     `json:"state"`
	Reason  string    `json:"reason,omitempty"` // why it entered State
	Version uint64    `json:"version"`
	LastSeq uint64    `json:"last_seq"`
	Defined time.Time `json:"defined"`
	Updated time.Time `json:"updated"`
	Live    *Live     `json:"live,omitempty"` // nil while shut off
	// Job is the asynchronous job the log says is running (job-started
	// without its end), nil when none.
	Job *ActiveJob `json:"job,omitempty"`
	// Running is what the running QEMU has: the config at start
	// amended by live device changes (devices.go); nil while shut off.
	Running *Config `json:"live_config,omitempty"`
	// Pending are the devices whose detach was requested and neither
	// confirmed by QEMU (DEVICE_DELETED) nor refused yet.
	Pending []string `json:"detach_pending,omitempty"`
	// Migration is the last migration-state this host logged for the
	// domain: which side it was, and so whether it owns the domain.
	Migration *MigrationStatus `json:"migration,omitempty"`
	// Autostart: the agent starts the domain when it starts (virsh.go).
	Autostart bool `json:"autostart,omitempty"`
	// legacy: loaded from a snapshot older than Running, which was then
	// filled from Config (Equal does not compare it).
	legacy bool
}

// Live is what exists only while QEMU runs.
type Live struct {
	Accel     string    `json:"accel,omitempty"`
	PID       int       `json:"pid,omitempty"`
	ClockBase int64     `json:"clock_base"` // adjustment QEMU was started with (UTC seconds)
	RTC       int64     `json:"rtc_adjustment"`
	Started   time.Time `json:"started"`
	// Taints say what was done to this QEMU behind the model's back
	// (custom-monitor: a raw QMP command; virsh.go).
	Taints []string `json:"taints,omitempty"`
}

func (d *Domain) clone() Domain {
	c := *d
	c.Config = d.Config.Clone()
	if d.Live != nil {
		l := *d.Live
		c.Live = &l
	}
	if d.Job != nil {
		j := *d.Job
		c.Job = &j
	}
	if d.Running != nil {
		lc := d.Running.Clone()
		c.Running = &lc
	}
	if d.Migration != nil {
		m := *d.Migration
		c.Migration = &m
	}
	c.Pending = append([]string(nil), d.Pending...)
	if len(c.Pending) == 0 {
		c.Pending = nil
	}
	return c
}

// Projection folds events into domains. It is not safe for concurrent use;
// the service guards it.
type Projection struct {
	lastSeq uint64
	domains map[uuid.UUID]*Domain
	byName  map[string]uuid.UUID
	// versions of undefined domains, so a redefinition continues the
	// domain's version sequence exactly as the log does.
	tombstones map[uuid.UUID]uint64
	// active indexes the domains whose state is active (projection_active.go).
	active map[uuid.UUID]*Domain
}

// NewProjection returns an empty projection.
func NewProjection() *Projection {
	return &Projection{
		domains:    make(map[uuid.UUID]*Domain),
		byName:     make(map[string]uuid.UUID),
		tombstones: make(map[uuid.UUID]uint64),
		active:     make(map[uuid.UUID]*Domain),
	}
}

// LastSeq is the sequence of the last event folded.
func (p *Projection) LastSeq() uint64 { return p.lastSeq }

// Len is the number of defined domains.
func (p *Projection) Len() int { return len(p.domains) }

// Get returns a copy of the domain.
func (p *Projection) Get(id uuid.UUID) (Domain, bool) {
	d, ok := p.domains[id]
	if !ok {
		return Domain{}, false
	}
	return d.clone(), true
}

// Lookup finds a domain by name or UUID string. A UUID wins over a name:
// define refuses names that parse as UUIDs, but an older log may hold one,
// and it must not stand in for the domain whose UUID it spells.
func (p *Projection) Lookup(ref string) (Domain, bool) {
	if id, err := uuid.Parse(ref); err == nil {
		if d, ok := p.Get(id); ok {
			return d, true
		}
	}
	if id, ok := p.byName[ref]; ok {
		return p.Get(id)
	}
	return Domain{}, false
}

// ByName returns the UUID of the domain defined under name.
func (p *Projection) ByName(name string) (uuid.UUID, bool) {
	id, ok := p.byName[name]
	return id, ok
}

// Version is the domain's current version, including undefined domains.
func (p *Projection) Version(id uuid.UUID) uint64 {
	if d, ok := p.domains[id]; ok {
		return d.Version
	}
	return p.tombstones[id]
}

// List returns copies of all domains, sorted by name.
func (p *Projection) List() []Domain {
	out := make([]Domain, 0, len(p.domains))
	for _, d := range p.domains {
		out = append(out, d.clone())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Config.Name < out[j].Config.Name })
	return out
}

// Apply folds one committed event. Events must come in sequence order and
// in version order per domain; anything else is a corrupt log or a bug, and
// is refused without changing the projection.
func (p *Projection) Apply(e Event) error {
	if e.Seq <= p.lastSeq {
		return fmt.Errorf("apply seq %d after %d: out of order: %w", e.Seq, p.lastSeq, ErrCorrupt)
	}
	if e.Payload == nil || e.Payload.EventType() != e.Type {
		return fmt.Errorf("seq %d: %s event with payload %T: %w", e.Seq, e.Type, e.Payload, ErrCorrupt)
	}
	d := p.domains[e.Domain]
	if e.Type == TypeDefined {
		if d != nil {
			return fmt.Errorf("seq %d: domain %s defined twice: %w", e.Seq, e.Domain, ErrCorrupt)
		}
		def, ok := e.Payload.(Defined)
		if !ok || def.Config.UUID != e.Domain {
			return fmt.Errorf("seq %d: defined payload %T does not define domain %s: %w", e.Seq, e.Payload, e.Domain, ErrCorrupt)
		}
		if want := p.tombstones[e.Domain] + 1; e.Version != want {
			return fmt.Errorf("seq %d: domain %s version %d, want %d: %w", e.Seq, e.Domain, e.Version, want, ErrCorrupt)
		}
		if _, taken := p.byName[def.Config.Name]; taken {
			return fmt.Errorf("seq %d: name %q already taken: %w", e.Seq, def.Config.Name, ErrCorrupt)
		}
		delete(p.tombstones, e.Domain)
		p.domains[e.Domain] = &Domain{
			Config: def.Config.Clone(), State: StateShutoff, Version: e.Version, LastSeq: e.Seq,
			Defined: e.Time, Updated: e.Time,
		}
		p.byName[def.Config.Name] = e.Domain
		p.lastSeq = e.Seq
		return nil
	}
	if d == nil {
		return fmt.Errorf("seq %d: %s for unknown domain %s: %w", e.Seq, e.Type, e.Domain, ErrCorrupt)
	}
	if e.Version != d.Version+1 {
		return fmt.Errorf("seq %d: domain %s version %d, want %d: %w", e.Seq, e.Domain, e.Version, d.Version+1, ErrCorrupt)
	}
	if c, ok := e.Payload.(ConfigUpdated); ok && (c.Config.Name != d.Config.Name || c.Config.UUID != e.Domain) {
		return fmt.Errorf("seq %d: config-updated may not change name or uuid: %w", e.Seq, ErrCorrupt)
	}
	next, ok := Next(d.State, e.Type)
	if !ok {
		return fmt.Errorf("seq %d: %s is illegal in state %q: %w", e.Seq, e.Type, d.State, ErrCorrupt)
	}
	if err := d.fold(e, next); err != nil {
		return fmt.Errorf("seq %d: %w", e.Seq, err)
	}
	if e.Type == TypeUndefined {
		delete(p.domains, e.Domain)
		delete(p.byName, d.Config.Name)
		p.tombstones[e.Domain] = e.Version
	}
	p.index(e.Domain, d)
	d.Version, d.LastSeq, d.Updated = e.Version, e.Seq, e.Time
	p.lastSeq = e.Seq
	return nil
}

// fold applies the payload to the domain (its catalogue row says how; the
// row checks the payload before changing anything, so a bad event leaves
// the domain untouched), then the state the table gives.
func (d *Domain) fold(e Event, next State) error {
	s := spec(e.Type)
	if s == nil {
		return fmt.Errorf("%s payload %T: %w", e.Type, e.Payload, ErrCorrupt)
	}
	if err := s.fold(d, e); err != nil {
		return err
	}
	d.State = next
	return nil
}

// snapshot is the serialised projection.
type snapshot struct {
	LastSeq    uint64               `json:"last_seq"`
	Domains    []Domain             `json:"domains"`
	Tombstones map[uuid.UUID]uint64 `json:"tombstones,omitempty"`
}

// MarshalSnapshot serialises the whole projection.
func (p *Projection) MarshalSnapshot() ([]byte, error) {
	s := snapshot{LastSeq: p.lastSeq, Domains: make([]Domain, 0, len(p.domains)), Tombstones: p.tombstones}
	for _, d := range p.domains {
		s.Domains = append(s.Domains, *d)
	}
	sort.Slice(s.Domains, func(i, j int) bool { return s.Domains[i].LastSeq < s.Domains[j].LastSeq })
	return json.Marshal(s)
}

// UnmarshalSnapshot rebuilds a projection from MarshalSnapshot's output.
func UnmarshalSnapshot(b []byte) (*Projection, error) {
	var s snapshot
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	p := NewProjection()
	p.lastSeq = s.LastSeq
	for i := range s.Domains {
		d := s.Domains[i]
		if d.Live != nil && d.Running == nil {
			// A snapshot from before live configs: QEMU has the config.
			lc := d.Config.Clone()
			d.Running, d.legacy = &lc, true
		}
		if _, dup := p.byName[d.Config.Name]; dup {
			return nil, fmt.Errorf("snapshot: name %q twice: %w", d.Config.Name, ErrCorrupt)
		}
		p.domains[d.Config.UUID] = &d
		p.byName[d.Config.Name] = d.Config.UUID
		p.index(d.Config.UUID, &d)
	}
	for id, v := range s.Tombstones {
		p.tombstones[id] = v
	}
	return p, nil
}

// Equal reports whether two projections hold the same state, describing
// the first difference. Replay tests and `log verify` use it.
func (p *Projection) Equal(q *Projection) (bool, string) {
	if p.lastSeq != q.lastSeq {
		return false, fmt.Sprintf("last seq %d != %d", p.lastSeq, q.lastSeq)
	}
	if len(p.domains) != len(q.domains) {
		return false, fmt.Sprintf("%d domains != %d", len(p.domains), len(q.domains))
	}
	for id, d := range p.domains {
		o, ok := q.domains[id]
		if !ok {
			return false, fmt.Sprintf("domain %s missing", id)
		}
		dd, oo := *d, *o
		if d.legacy || o.legacy {
			dd.Running, oo.Running = nil, nil
		}
		a, _ := json.Marshal(dd)
		b, _ := json.Marshal(oo)
		if string(a) != string(b) {
			return false, fmt.Sprintf("domain %s differs:\n%s\n%s", id, a, b)
		}
	}
	for id, v := range p.tombstones {
		if q.tombstones[id] != v {
			return false, fmt.Sprintf("tombstone %s: %d != %d", id, v, q.tombstones[id])
		}
	}
	return len(p.tombstones) == len(q.tombstones), "tombstones differ"
}

// Check reports whether evs would fold cleanly onto the domain, and the
// domain's name and state after them (a removed domain keeps its name and
// reads as shut off).
func (p *Projection) Check(id uuid.UUID, evs []Event) (string, State, error) {
	q := NewProjection()
	q.lastSeq = p.lastSeq
	name := ""
	if d, ok := p.domains[id]; ok {
		c := d.clone()
		q.domains[id] = &c
		name = d.Config.Name
	}
	if v, ok := p.tombstones[id]; ok {
		q.tombstones[id] = v
	}
	for i, e := range evs {
		e.Seq, e.Version = p.lastSeq+uint64(i)+1, p.Version(id)+uint64(i)+1
		if def, ok := e.Payload.(Defined); ok {
			if other, taken := p.byName[def.Config.Name]; taken && other != id {
				return "", "", fmt.Errorf("name %q is taken by domain %s", def.Config.Name, other)
			}
			name = def.Config.Name
		}
		if err := q.Apply(e); err != nil {
			return "", "", err
		}
	}
	if d, ok := q.domains[id]; ok {
		return name, d.State, nil
	}
	return name, StateShutoff, nil
}
