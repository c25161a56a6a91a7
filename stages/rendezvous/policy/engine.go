package policy

import (
	"fmt"
	"math"
	"time"
)

// Reasons the Engine gives, besides ReasonChampion, ReasonFallback and
// ReasonDefault.
const (
	ReasonLatest   = "latest"   // the highest version of the first model name answered
	ReasonEnsemble = "ensemble" // the quorum answered; the winner is synthesized
	ReasonTenant   = "tenant"   // the tenant's own model answered
	ReasonABPrefix = "ab:"      // followed by the arm's name: a model of that arm answered
)

// Request is what the engine needs of a request.
type Request struct {
	ID string
	// Key is the client key: the A/B split, tenant routing and key-hash
	// sampling use it. When empty, the A/B split hashes ID instead.
	Key string
	// Received is when the request was received; with elapsed it gives the
	// time the breaker is asked at. Unused without a breaker.
	Received time.Time
	// SLA overrides the configured SLA for this request when positive.
	SLA time.Duration
}

// Engine decides requests by one objective's Config. It is immutable and
// safe for concurrent use; its only state is the optional Breaker, shared
// across requests (and across engines, when a reloaded config is given the
// old breaker).
type Engine struct {
	cfg     Config
	kind    string
	models  []compiled
	chain   []int // priority chain: shared champions and canaries by priority
	latest  []int // by name (in priority order), newest version first
	arms    []arm
	members []int
	quorum  int
	method  string
	ensName string
	tenants map[string][]int
	breaker *Breaker
	byKey   map[string]int
}

type compiled struct {
	ModelConfig
	key    string
	budget time.Duration
	sample int // basis points; -1 when always expected
}

type arm struct {
	name, reason string
	upto         uint64 // cumulative basis points
	chain        []int
}

// New compiles a Config. b is the breaker the engine consults; when nil
// and the config has a breaker section, New makes one.
func New(c Config, b *Breaker) (*Engine, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if b == nil && c.Breaker != nil {
		b = NewBreaker(*c.Breaker)
	}
	e := &Engine{cfg: c, kind: c.kind(), breaker: b, byKey: make(map[string]int, len(c.Models))}
	var tenantIdx []int
	for i, m := range c.Models {
		cm := compiled{ModelConfig: m, key: m.Key(), budget: time.Duration(m.Budget), sample: -1}
		if m.Sample != nil {
			cm.sample = int(math.Round(m.Sample.Percent * 100))
		}
		e.models = append(e.models, cm)
		e.byKey[cm.key] = i
		answers := m.Role == RoleChampion || m.Role == RoleCanary
		switch {
		case m.Tenant != "" && answers:
			tenantIdx = append(tenantIdx, i)
		case answers:
			e.chain = append(e.chain, i)
		}
	}
	byPriority := func(a, b int) bool { return c.Models[a].Priority < c.Models[b].Priority }
	newer := func(a, b int) bool { return CompareVersions(c.Models[a].Version, c.Models[b].Version) > 0 }
	sortStable(e.chain, byPriority)
	e.latest = latestOrder(c, e.chain)
	if len(tenantIdx) > 0 {
		sortStable(tenantIdx, func(a, b int) bool {
			if c.Models[a].Priority != c.Models[b].Priority {
				return byPriority(a, b)
			}
			return newer(a, b)
		})
		e.tenants = map[string][]int{}
		for _, i := range tenantIdx {
			t := c.Models[i].Tenant
			e.tenants[t] = append(e.tenants[t], i)
		}
	}
	if c.AB != nil {
		var upto uint64
		for _, a := range c.AB.Arms {
			upto += uint64(math.Round(a.Percent * 100))
			ar := arm{name: a.Name, reason: ReasonABPrefix + a.Name, upto: upto}
			for _, r := range a.Models {
				idx, _ := c.resolve(r)
				ar.chain = appendNew(ar.chain, idx...)
			}
			e.arms = append(e.arms, ar)
		}
	}
	if en := c.Ensemble; en != nil {
		e.quorum, e.method, e.ensName = en.Quorum, en.Method, en.Name
		if e.ensName == "" {
			e.ensName = "ensemble"
		}
		if len(en.Models) == 0 {
			e.members = e.chain
		}
		for _, r := range en.Models {
			idx, _ := c.resolve(r)
			e.members = appendNew(e.members, idx...)
		}
	}
	return e, nil
}

// latestOrder groups the chain by model name, names in the order of their
// first (highest-priority) version, versions newest first.
func latestOrder(c Config, chain []int) []int {
	var names []string
	group := map[string][]int{}
	for _, i := range chain {
		n := c.Models[i].Name
		if _, ok := group[n]; !ok {
			names = append(names, n)
		}
		group[n] = append(group[n], i)
	}
	out := make([]int, 0, len(chain))
	for _, n := range names {
		g := group[n]
		sortStable(g, func(a, b int) bool { return CompareVersions(c.Models[a].Version, c.Models[b].Version) > 0 })
		out = append(out, g...)
	}
	return out
}

func appendNew(dst []int, idx ...int) []int {
next:
	for _, i := range idx {
		for _, d := range dst {
			if d == i {
				continue next
			}
		}
		dst = append(dst, i)
	}
	return dst
}

// Budget is how long after req the engine waits for the model with key
// (its budget, capped at the SLA); false when the engine has no such model.
func (e *Engine) Budget(key string, req Request) (time.Duration, bool) {
	i, ok := e.byKey[key]
	if !ok {
		return 0, false
	}
	d := decider{e: e, req: req, sla: e.sla(req)}
	return d.budget(i), true
}

// Model is the configuration of the model with key.
func (e *Engine) Model(key string) (ModelConfig, bool) {
	i, ok := e.byKey[key]
	if !ok {
		return ModelConfig{}, false
	}
	return e.models[i].ModelConfig, true
}

// Keys lists the keys of every model the engine knows, in document order.
func (e *Engine) Keys() []string {
	out := make([]string, len(e.models))
	for i := range e.models {
		out[i] = e.models[i].key
	}
	return out
}

// Kind is the engine's main policy (priority, latest, ab or ensemble).
func (e *Engine) Kind() string { return e.kind }

// Breaker is the engine's breaker, nil when it has none.
func (e *Engine) Breaker() *Breaker { return e.breaker }

// Config is the configuration the engine was built from.
func (e *Engine) Config() Config { return e.cfg }

// Chain lists the model keys the policy tries in order for req: the
// tenant's models first, then the A/B arm's chain, the ensemble members, the
// latest-version order or the priority chain.
func (e *Engine) Chain(req Request) []string {
	var out []string
	add := func(idx []int) {
		for _, i := range idx {
			out = append(out, e.models[i].key)
		}
	}
	add(e.tenants[req.Key])
	switch e.kind {
	case KindAB:
		add(e.arm(req).chain)
	case KindEnsemble:
		add(e.members)
	case KindLatest:
		add(e.latest)
	default:
		add(e.chain)
	}
	return out
}

// Expected lists the keys of the models whose scores the stage should wait
// for before it closes req's mailbox and logs the decision: every model,
// except other tenants' models and the shadows whose sampling does not
// select req. It never changes the answer.
func (e *Engine) Expected(req Request) []string {
	out := make([]string, 0, len(e.models))
	for i := range e.models {
		m := &e.models[i]
		if m.Tenant != "" && m.Tenant != req.Key {
			continue
		}
		if m.Role == RoleShadow && !e.sampled(m, req) {
			continue
		}
		out = append(out, m.key)
	}
	return out
}

// Expects reports whether key is among Expected(req), in one step.
func (e *Engine) Expects(key string, req Request) bool {
	i, ok := e.byKey[key]
	if !ok {
		return false
	}
	m := &e.models[i]
	if m.Tenant != "" && m.Tenant != req.Key {
		return false
	}
	return m.Role != RoleShadow || e.sampled(m, req)
}

func (e *Engine) sampled(m *compiled, req Request) bool {
	if m.sample < 0 {
		return true
	}
	in := req.ID
	if m.Sample.By == SampleKeyHash {
		in = req.Key
	}
	return bucket(m.key, in) < uint64(m.sample)
}

func (e *Engine) arm(req Request) *arm {
	k := req.Key
	if k == "" {
		k = req.ID
	}
	b := bucket(KindAB, k)
	for i := range e.arms {
		if b < e.arms[i].upto {
			return &e.arms[i]
		}
	}
	return &e.arms[len(e.arms)-1]
}

// Arm is the name of the A/B arm req falls in ("" unless the policy is ab).
func (e *Engine) Arm(req Request) string {
	if e.kind != KindAB {
		return ""
	}
	return e.arm(req).name
}

// bucket hashes salt and key with 64-bit FNV-1a, mixes the bits, and
// returns a bucket in [0, 10000): basis points.
func bucket(salt, key string) uint64 {
	const offset, prime = 14695981039346656037, 1099511628211
	h := uint64(offset)
	for i := 0; i < len(salt); i++ {
		h = (h ^ uint64(salt[i])) * prime
	}
	h = (h ^ 0xff) * prime // separator: ("a","bc") differs from ("ab","c")
	for i := 0; i < len(key); i++ {
		h = (h ^ uint64(key[i])) * prime
	}
	// A final avalanche so that near keys ("u1", "u2") spread evenly.
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return h % 10000
}

// Decide looks at the scores so far (keyed by Key(model, version); a score
// keyed by the bare model name also counts when its Version matches),
// elapsed time after req was received. It returns the answer, or when
// to look again. Without a breaker it is pure; with one it may claim the
// half-open probe for req.
func (e *Engine) Decide(req Request, elapsed time.Duration, scores map[string]*Score) Outcome {
	d := decider{e: e, req: req, elapsed: elapsed, scores: scores, sla: e.sla(req)}
	if len(e.tenants) > 0 {
		if t := e.tenants[req.Key]; len(t) > 0 {
			_, s, wake, waiting := d.walk(t)
			switch {
			case s != nil:
				return Outcome{Decided: true, Policy: KindTenant, Reason: ReasonTenant, Winner: s}
			case waiting:
				return Outcome{Policy: KindTenant, WakeAt: wake}
			}
			o := d.main()
			o.Policy = KindTenant
			if o.Decided && o.Winner != nil {
				o.Reason = ReasonFallback
			}
			return o
		}
	}
	return d.main()
}

func (e *Engine) sla(req Request) time.Duration {
	if req.SLA > 0 {
		return req.SLA
	}
	return time.Duration(e.cfg.SLA)
}

type decider struct {
	e       *Engine
	req     Request
	elapsed time.Duration
	sla     time.Duration
	scores  map[string]*Score
}

func (d *decider) main() Outcome {
	e := d.e
	switch e.kind {
	case KindAB:
		a := e.arm(d.req)
		o := d.chainOutcome(a.chain, KindAB, a.reason, a.reason)
		o.Arm = a.name
		return o
	case KindLatest:
		return d.chainOutcome(e.latest, KindLatest, ReasonLatest, ReasonFallback)
	case KindEnsemble:
		return d.ensemble()
	}
	return d.chainOutcome(e.chain, KindPriority, ReasonChampion, ReasonFallback)
}

// chainOutcome walks a chain: first gives the reason when its first model
// answers, rest when a later one does.
func (d *decider) chainOutcome(chain []int, policy, first, rest string) Outcome {
	pos, s, wake, waiting := d.walk(chain)
	switch {
	case s != nil:
		r := rest
		// In a priority chain "champion" means the champion answered: a
		// canary at the head of the chain (no champion deployed, or it is
		// gone) still answers as a fallback.
		if pos == 0 && (policy != KindPriority || d.e.models[chain[0]].Role == RoleChampion) {
			r = first
		}
		return Outcome{Decided: true, Policy: policy, Reason: r, Winner: s}
	case waiting:
		return Outcome{Policy: policy, WakeAt: wake}
	}
	return d.end(policy)
}

// end is the outcome once nothing is worth waiting for but the SLA.
func (d *decider) end(policy string) Outcome {
	if d.elapsed >= d.sla {
		return Outcome{Decided: true, Policy: policy, Reason: ReasonDefault}
	}
	return Outcome{Policy: policy, WakeAt: d.sla}
}

// lookup is model i's score, nil when none has arrived.
func (d *decider) lookup(i int) *Score {
	m := &d.e.models[i]
	s := d.scores[m.key]
	if s == nil && m.Version != "" {
		if t := d.scores[m.Name]; t != nil && t.Version == m.Version {
			s = t
		}
	}
	return s
}

func (d *decider) budget(i int) time.Duration {
	b := d.e.models[i].budget
	if b <= 0 || b > d.sla {
		return d.sla
	}
	return b
}

// admit reports whether the breaker lets the engine use or wait for model i.
func (d *decider) admit(i int) bool {
	if d.e.breaker == nil {
		return true
	}
	return d.e.breaker.Admit(d.e.models[i].key, d.req.ID, d.req.Received.Add(d.elapsed))
}

// walk finds the first model in chain that answered, skipping failed ones,
// ones the breaker holds open and ones whose budget is over; it stops at
// the first one still worth waiting for.
func (d *decider) walk(chain []int) (pos int, s *Score, wakeAt time.Duration, waiting bool) {
	for pos, i := range chain {
		s := d.lookup(i)
		if s != nil && s.Failed {
			continue
		}
		if !d.admit(i) {
			continue // open: as good as failed
		}
		if s != nil {
			return pos, s, 0, false
		}
		if b := d.budget(i); d.elapsed < b {
			return pos, nil, b, true
		}
	}
	return -1, nil, 0, false
}

// ensemble waits for every member that may still answer within its budget,
// then combines the answers if at least a quorum answered, and otherwise
// falls back to the priority chain (reason fallback) or the default.
func (d *decider) ensemble() Outcome {
	e := d.e
	var buf [8]*Score
	ok := buf[:0]
	pending := 0
	wake := time.Duration(math.MaxInt64)
	for _, i := range e.members {
		s := d.lookup(i)
		if s != nil && s.Failed || !d.admit(i) {
			continue
		}
		if s != nil {
			ok = append(ok, s)
			continue
		}
		if b := d.budget(i); d.elapsed < b {
			pending++
			wake = min(wake, b)
		}
	}
	if pending > 0 && len(ok)+pending >= e.quorum {
		return Outcome{Policy: KindEnsemble, WakeAt: wake}
	}
	if len(ok) >= e.quorum {
		return Outcome{Decided: true, Policy: KindEnsemble, Reason: ReasonEnsemble, Winner: e.combine(ok)}
	}
	_, s, w, waiting := d.walk(e.chain)
	switch {
	case s != nil:
		return Outcome{Decided: true, Policy: KindEnsemble, Reason: ReasonFallback, Winner: s}
	case waiting:
		return Outcome{Policy: KindEnsemble, WakeAt: w}
	}
	return d.end(KindEnsemble)
}

// combine synthesizes the ensemble's score from the members that answered,
// in member (priority) order.
func (e *Engine) combine(ok []*Score) *Score {
	out := &Score{Model: e.ensName, Version: e.method, Role: KindEnsemble, Probabilities: map[string]float64{}}
	if e.method == MethodVote {
		var labels []string
		for _, s := range ok {
			if _, seen := out.Probabilities[s.Result]; !seen {
				labels = append(labels, s.Result)
			}
			out.Probabilities[s.Result]++
		}
		best := labels[0] // first seen wins ties: the highest-priority voter's
		for _, l := range labels[1:] {
			if out.Probabilities[l] > out.Probabilities[best] {
				best = l
			}
		}
		for l := range out.Probabilities {
			out.Probabilities[l] /= float64(len(ok))
		}
		out.Result = best
		return out
	}
	for _, s := range ok {
		if len(s.Probabilities) == 0 {
			out.Probabilities[s.Result]++
			continue
		}
		for l, p := range s.Probabilities {
			out.Probabilities[l] += p
		}
	}
	top := math.Inf(-1)
	for l := range out.Probabilities {
		out.Probabilities[l] /= float64(len(ok))
		top = max(top, out.Probabilities[l])
	}
	// Ties: the label of the highest-priority member among the tied, else
	// the smallest label.
	for _, s := range ok {
		if p, has := out.Probabilities[s.Result]; has && p == top {
			out.Result = s.Result
			return out
		}
	}
	first := true
	for l, p := range out.Probabilities {
		if p == top && (first || l < out.Result) {
			out.Result, first = l, false
		}
	}
	return out
}

// String describes the outcome in one line, for logs and examples.
func (o Outcome) String() string {
	if !o.Decided {
		return fmt.Sprintf("undecided policy=%s wake_at=%v", o.Policy, o.WakeAt)
	}
	w := "default"
	if o.Winner != nil {
		w = Key(o.Winner.Model, o.Winner.Version) + " -> " + o.Winner.Result
	}
	s := fmt.Sprintf("policy=%s reason=%s winner=%s", o.Policy, o.Reason, w)
	if o.Arm != "" {
		s += " arm=" + o.Arm
	}
	return s
}
