package elastic

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rendezvous-ml/rendezvous/connectors/elastic/esclient"
)

// bulkFunc sends one bulk request; see esclient.Indexer.Bulk.
type bulkFunc func(ctx context.Context, docs []esclient.Doc) ([]esclient.ItemResult, error)

// pending is a document to store and the record it was made from.
type pending struct {
	doc esclient.Doc
	rec *kgo.Record
}

// refused is a record Elasticsearch refused for good, with the reason.
type refused struct {
	rec    *kgo.Record
	reason error
}

// outcome is what to do with one item of a bulk answer.
type outcome int

const (
	stored  outcome = iota // in Elasticsearch
	already                // a create found the id there: stored by an earlier attempt
	retry                  // 429 or 5xx: send again after a backoff
	blocked                // 401, 403, 404: the cluster refuses us, not the document; wait and send again
	refuse                 // mapping or parse error and other 4xx: the dead-letter topic
)

// classify decides an item's fate. With create actions (data streams) a
// version conflict means the id is already stored: a replay after a crash.
func classify(it esclient.ItemResult, create bool) outcome {
	switch st := it.Status; {
	case it.OK():
		return stored
	case create && st == http.StatusConflict && it.ErrType == "version_conflict_engine_exception":
		return already
	case it.Retryable():
		return retry
	case st == http.StatusUnauthorized || st == http.StatusForbidden || st == http.StatusNotFound:
		return blocked
	default:
		return refuse
	}
}

// itemError is the dead-letter reason of a refused item.
func itemError(it esclient.ItemResult) error {
	msg := fmt.Sprintf("elasticsearch refused the document (%d %s): %s", it.Status, it.ErrType, it.Reason)
	if it.Cause != "" {
		msg += "; caused by " + it.Cause
	}
	return errors.New(msg)
}

// storer indexes documents until each is stored or refused for good.
type storer struct {
	bulk   bulkFunc
	create bool // create actions: a version conflict is a document already there
	log    *slog.Logger
	// count is called with a record's topic and its outcome name: indexed,
	// duplicate, retried, blocked, dead_letter.
	count func(topic, outcome string)
	// paused is called with true while Elasticsearch cannot be written to
	// and with false once it can again.
	paused func(bool)
	// backoff bounds of the retries.
	minWait, maxWait time.Duration
}

// errStopped ends a batch that could not be finished before shutdown.
var errStopped = errors.New("stopped before the batch was indexed")

func wait(stop context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-stop.Done():
		return errStopped
	case <-t.C:
		return nil
	}
}

// store writes every document and returns those Elasticsearch refused for
// good. It returns nil error only when each document is either stored or
// in the refused list: a batch is never half done. While Elasticsearch is
// unreachable it waits and tries again; stop ends that wait with
// errStopped. ctx is the context of the calls themselves.
func (s *storer) store(ctx, stop context.Context, items []pending) ([]refused, error) {
	var out []refused
	down := s.minWait  // backoff while the whole request fails
	again := s.minWait // backoff for items to retry
	for len(items) > 0 {
		docs := make([]esclient.Doc, len(items))
		for i, p := range items {
			docs[i] = p.doc
		}
		res, err := s.send(ctx, docs)
		if err != nil {
			var re *esclient.RequestError
			auth := errors.As(err, &re) && (re.Status == http.StatusUnauthorized || re.Status == http.StatusForbidden)
			if !esclient.IsRetryable(err) && !auth {
				return nil, fmt.Errorf("bulk index: %w", err)
			}
			s.paused(true)
			if auth {
				s.log.Error("elasticsearch refuses our credentials; fetching paused", "err", err, "retry_in", down)
			} else {
				s.log.Warn("elasticsearch unavailable; fetching paused", "err", err, "retry_in", down)
			}
			if err := wait(stop, down); err != nil {
				return nil, err
			}
			down = min(2*down, s.maxWait)
			continue
		}
		down = s.minWait
		var next []pending
		progress, nBlocked := false, 0
		for i, it := range res {
			p := items[i]
			switch classify(it, s.create) {
			case stored:
				progress = true
				s.count(p.rec.Topic, "indexed")
			case already:
				progress = true
				s.count(p.rec.Topic, "duplicate")
			case retry:
				s.count(p.rec.Topic, "retried")
				next = append(next, p)
			case blocked:
				nBlocked++
				s.count(p.rec.Topic, "blocked")
				if nBlocked == 1 {
					s.log.Error("elasticsearch refuses to store documents; retrying", "id", it.Doc.ID, "index", it.Doc.Index,
						"status", it.Status, "type", it.ErrType, "reason", it.Reason)
				}
				next = append(next, p)
			case refuse:
				progress = true
				reason := itemError(it)
				s.count(p.rec.Topic, "dead_letter")
				s.log.Warn("document refused; dead-lettered", "id", it.Doc.ID, "index", it.Doc.Index, "err", reason)
				out = append(out, refused{rec: p.rec, reason: reason})
			}
		}
		// Nothing but blocked items: the cluster is up but will not take
		// them, which is an outage for this connector.
		s.paused(nBlocked > 0 && nBlocked == len(next) && !progress)
		items = next
		if len(items) == 0 {
			break
		}
		if err := wait(stop, again); err != nil {
			return nil, err
		}
		again = min(2*again, s.maxWait)
	}
	return out, nil
}

// send is one bulk call, split in halves when the request is too large
// (413); a single document too large is refused as an item.
func (s *storer) send(ctx context.Context, docs []esclient.Doc) ([]esclient.ItemResult, error) {
	res, err := s.bulk(ctx, docs)
	var re *esclient.RequestError
	if err == nil || !errors.As(err, &re) || re.Status != http.StatusRequestEntityTooLarge {
		return res, err
	}
	if len(docs) == 1 {
		return []esclient.ItemResult{{Doc: docs[0], Status: http.StatusRequestEntityTooLarge,
			ErrType: re.ErrType, Reason: "the document alone is larger than the cluster's http.max_content_length: " + re.Reason}}, nil
	}
	s.log.Info("bulk request too large; splitting it", "docs", len(docs))
	half := len(docs) / 2
	first, err := s.send(ctx, docs[:half])
	if err != nil {
		return nil, err
	}
	second, err := s.send(ctx, docs[half:])
	if err != nil {
		// The first half is stored; sending it again overwrites it (or
		// finds it there), so the whole call can simply be repeated.
		return nil, err
	}
	return append(first, second...), nil
}
