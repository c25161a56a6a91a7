package rendezvous

import (
	"container/heap"
	"time"

	"github.com/rendezvous-ml/rendezvous/stages/rendezvous/policy"
)

// request is what a mailbox keeps of its request.
type request struct {
	Offset         int64
	Key            string
	ReceivedUS     int64
	DeadlineUS     int64
	ReplyTopic     string
	ReplyPartition int32
	Features       map[string]float64
}

// seen is one model's score as the mailbox recorded it.
type seen struct {
	policy.Score
	Error      string // the model's error message, when it failed
	ComputeUS  int64
	ArrivedUS  int64 // absolute
	Late       bool
	Duplicates int32
}

// mailbox holds one request's race.
type mailbox struct {
	ID        string
	Partition int32
	Req       *request // nil while only scores have arrived
	Scores    map[string]*seen
	Arrival   []string // model names in arrival order
	Decided   bool
	Reason    string
	Policy    string
	Winner    string // score key of the winner; "" for the default
	DecidedUS int64
	OrphanAt  int64 // first score's arrival, for orphans

	// minScore is the offset of the earliest score in the mailbox, -1 for
	// none: the scores partition may not be committed past it while open.
	minScore int64
	wake     time.Time
	// recorded holds the models whose result on this request the breaker
	// has had, so none is counted twice.
	recorded map[string]bool
	pscores  map[string]*policy.Score
	// pending counts the expected models that have not reported, from the
	// request's arrival on; -1 until counted. It makes the "has everyone
	// reported?" check one step per score, whatever the number of models.
	pending int
	// expired: the frontend answered the default itself (its marker came).
	expired bool
	// prior is the answer a previous owner gave the request, read back from
	// the results topic on a takeover; given: decided as that answer, which
	// the caller already has.
	prior *answerGiven
	given bool
	// late: the stage read the request after its deadline, or before its
	// partition caught up; the breaker learns nothing from it.
	late bool
}

func newMailbox(id string, p int32) *mailbox {
	return &mailbox{ID: id, Partition: p, Scores: map[string]*seen{}, minScore: -1, pending: -1}
}

// request is the policy's view of the mailbox's request.
func (m *mailbox) request() policy.Request {
	r := policy.Request{ID: m.ID}
	if m.Req != nil {
		r.Key = m.Req.Key
		r.Received = time.UnixMicro(m.Req.ReceivedUS)
		r.SLA = time.Duration(m.Req.DeadlineUS-m.Req.ReceivedUS) * time.Microsecond
	}
	return r
}

// add files a score, for the mailbox and for the policy.
func (m *mailbox) add(key string, sc *seen) {
	m.Scores[key] = sc
	m.Arrival = append(m.Arrival, key)
	if m.pscores == nil {
		m.pscores = make(map[string]*policy.Score, 4)
	}
	m.pscores[key] = &sc.Score
}

// policyScores is the scores as the policy reads them; kept as scores
// arrive, so deciding costs nothing per model already there.
func (m *mailbox) policyScores() map[string]*policy.Score { return m.pscores }

// wakeups orders mailboxes by their next wake-up time. Entries are not
// removed when a mailbox's time changes; a stale entry is skipped when its
// time no longer matches the mailbox's.
type wakeups []wakeup

type wakeup struct {
	at time.Time
	id string
}

func (w wakeups) Len() int           { return len(w) }
func (w wakeups) Less(i, j int) bool { return w[i].at.Before(w[j].at) }
func (w wakeups) Swap(i, j int)      { w[i], w[j] = w[j], w[i] }
func (w *wakeups) Push(x any)        { *w = append(*w, x.(wakeup)) }
func (w *wakeups) Pop() any {
	old := *w
	x := old[len(old)-1]
	*w = old[:len(old)-1]
	return x
}

func (w *wakeups) schedule(m *mailbox, at time.Time) {
	if m.wake.Equal(at) {
		return
	}
	m.wake = at
	heap.Push(w, wakeup{at: at, id: m.ID})
}

func (w wakeups) next() (time.Time, bool) {
	if len(w) == 0 {
		return time.Time{}, false
	}
	return w[0].at, true
}
