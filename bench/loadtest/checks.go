package loadtest

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rendezvous-ml/rendezvous/pipeline/promtext"
	"github.com/rendezvous-ml/rendezvous/testcontainers/esfake"
)

// decisions reads the decisions topic (read_committed, as every log reader
// does) and remembers each request id it saw.
type decisions struct {
	cl   *kgo.Client
	seen map[string]bool
}

func newDecisions(brokers []string, topic string) (*decisions, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...),
		kgo.ConsumeTopics(topic),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
	)
	if err != nil {
		return nil, fmt.Errorf("decisions reader: %w", err)
	}
	return &decisions{cl: cl, seen: map[string]bool{}}, nil
}

func (d *decisions) close() { d.cl.Close() }

// missing reads decisions until every id in ids has one, or until none
// has come for idle (a pipeline that is still catching up keeps being
// waited for, up to limit), and returns how many have none. Between steps
// the reader does not poll, so it costs nothing while the load runs.
func (d *decisions) missing(ctx context.Context, ids []string, idle, limit time.Duration) int {
	deadline := time.Now().Add(limit)
	last, progress := -1, time.Now()
	for {
		n := 0
		for _, id := range ids {
			if !d.seen[id] {
				n++
			}
		}
		if n != last {
			last, progress = n, time.Now()
		}
		if n == 0 || time.Since(progress) > idle || time.Now().After(deadline) || ctx.Err() != nil {
			return n
		}
		pctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		fs := d.cl.PollFetches(pctx)
		cancel()
		fs.EachRecord(func(r *kgo.Record) { d.seen[string(r.Key)] = true })
	}
}

// histogram is the running sum and count of a Prometheus histogram, summed
// over its label sets.
type histogram struct{ sum, count float64 }

// scrape reads the sum and count of histogram name from a stage's /metrics.
func scrape(addr, name string) (histogram, error) {
	m, err := promtext.Scrape(context.Background(), &http.Client{Timeout: 5 * time.Second}, addr)
	if err != nil {
		return histogram{}, err
	}
	var h histogram
	h.sum, _ = m.Sum(name + "_sum")
	h.count, _ = m.Sum(name + "_count")
	return h, nil
}

// openCircuits watches the rendezvous stage's circuit breakers while a
// step runs: it samples rdv_rendezvous_circuit_state every half second
// until stop is closed, and returns the seconds during which some model's
// circuit was not closed. An open circuit sends answers to the next model,
// so it explains fallbacks that latency alone does not.
func openCircuits(addr string, stop <-chan struct{}) float64 {
	const every = 500 * time.Millisecond
	c := &http.Client{Timeout: time.Second}
	open := 0
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return float64(open) * every.Seconds()
		case <-t.C:
		}
		m, err := promtext.Scrape(context.Background(), c, addr)
		if err != nil {
			continue
		}
		// States are 0 closed, 1 half-open, 2 open: any above 0 counts.
		if _, most := m.Sum("rdv_rendezvous_circuit_state"); most > 0 {
			open++
		}
	}
}

// meanBetween is the mean observation between two scrapes, in ms.
func meanBetween(a, b histogram) float64 {
	if b.count <= a.count {
		return 0
	}
	return (b.sum - a.sum) / (b.count - a.count) * 1000
}

// ServeESFake runs the Elasticsearch test server on a free loopback port,
// prints "url=<base url>" and serves until SIGTERM or SIGINT.
func ServeESFake() error {
	es := esfake.New()
	url, err := es.Start("")
	if err != nil {
		return err
	}
	defer es.Close()
	fmt.Println("url=" + url)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	return nil
}
