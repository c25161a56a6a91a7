package compare

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// ErrNoTopic: the topic to read does not exist.
var ErrNoTopic = errors.New("topic does not exist")

// ReadOptions bound a read.
type ReadOptions struct {
	// Since starts each partition at its first record at or after this
	// time; zero reads from the beginning.
	Since time.Time
	// Progress, when set, is called about every ProgressEvery (1s when
	// zero) while the read goes on, and once at the end.
	Progress      func(topic string, read, total int64)
	ProgressEvery time.Duration
	// Stall ends the read with an error when no partition moved for this
	// long (30s when zero): a read never hangs.
	Stall time.Duration
}

// ReadTopic reads a topic from opts.Since up to the end it had when the
// read began, calling fn with each committed record, and returns how many
// it read. The end is each partition's last stable offset, so only
// committed records count and records written after the start are not
// waited for. The read keeps the transaction markers (never passed to fn):
// a transactional log ends in a marker, and seeing it is how the read
// knows it reached the end.
func ReadTopic(ctx context.Context, base []kgo.Opt, topic string, opts ReadOptions, fn func(*kgo.Record) error) (int64, error) {
	if opts.ProgressEvery <= 0 {
		opts.ProgressEvery = time.Second
	}
	if opts.Stall <= 0 {
		opts.Stall = 30 * time.Second
	}
	admCl, err := kgo.NewClient(base...)
	if err != nil {
		return 0, fmt.Errorf("kafka client: %w", err)
	}
	adm := kadm.NewClient(admCl)
	ends, err := adm.ListCommittedOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		admCl.Close()
		if errors.Is(err, kerr.UnknownTopicOrPartition) {
			return 0, fmt.Errorf("%w: %s", ErrNoTopic, topic)
		}
		return 0, fmt.Errorf("end offsets of %s: %w", topic, err)
	}
	var starts kadm.ListedOffsets
	if opts.Since.IsZero() {
		starts, err = adm.ListStartOffsets(ctx, topic)
	} else {
		starts, err = adm.ListOffsetsAfterMilli(ctx, opts.Since.UnixMilli(), topic)
	}
	if err == nil {
		err = starts.Error()
	}
	admCl.Close()
	if err != nil {
		return 0, fmt.Errorf("start offsets of %s: %w", topic, err)
	}

	end := map[int32]int64{}
	pos := map[int32]int64{}
	assign := map[int32]kgo.Offset{}
	var total int64
	ends.Each(func(lo kadm.ListedOffset) {
		so, ok := starts.Lookup(topic, lo.Partition)
		if !ok || so.Offset < 0 || so.Offset >= lo.Offset {
			return
		}
		end[lo.Partition], pos[lo.Partition] = lo.Offset, so.Offset
		assign[lo.Partition] = kgo.NewOffset().At(so.Offset)
		total += lo.Offset - so.Offset
	})
	var read int64
	report := func() {
		if opts.Progress != nil {
			opts.Progress(topic, read, total)
		}
	}
	if len(assign) == 0 {
		report()
		return 0, nil
	}
	cl, err := kgo.NewClient(append(append([]kgo.Opt(nil), base...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: assign}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.KeepControlRecords(),
	)...)
	if err != nil {
		return 0, fmt.Errorf("kafka client: %w", err)
	}
	defer cl.Close()

	lastMove, lastReport := time.Now(), time.Now()
	for len(end) > 0 {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		fs := cl.PollFetches(pctx)
		cancel()
		if ctx.Err() != nil {
			return read, ctx.Err()
		}
		var ferr error
		fs.EachError(func(t string, p int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) && ferr == nil {
				ferr = fmt.Errorf("fetch %s partition %d: %w", t, p, err)
			}
		})
		if ferr != nil {
			return read, ferr
		}
		var done []int32
		var cbErr error
		fs.EachRecord(func(r *kgo.Record) {
			e, open := end[r.Partition]
			if cbErr != nil || !open || r.Offset >= e {
				return
			}
			pos[r.Partition] = r.Offset + 1
			lastMove = time.Now()
			if !r.Attrs.IsControl() {
				read++
				cbErr = fn(r)
			}
			if r.Offset+1 >= e {
				delete(end, r.Partition)
				done = append(done, r.Partition)
			}
		})
		if cbErr != nil {
			return read, cbErr
		}
		if len(done) > 0 {
			cl.PauseFetchPartitions(map[string][]int32{topic: done})
		}
		if time.Since(lastReport) >= opts.ProgressEvery {
			report()
			lastReport = time.Now()
		}
		if len(end) > 0 && time.Since(lastMove) > opts.Stall {
			var stuck []string
			for p, e := range end {
				stuck = append(stuck, fmt.Sprintf("partition %d at offset %d of %d", p, pos[p], e))
			}
			sort.Strings(stuck)
			return read, fmt.Errorf("read of %s stalled for %v: %s", topic, opts.Stall, strings.Join(stuck, ", "))
		}
	}
	report()
	return read, nil
}
