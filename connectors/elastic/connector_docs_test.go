package elastic

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rendezvous-ml/rendezvous/connectors/elastic/elastictest"
	"github.com/rendezvous-ml/rendezvous/connectors/elastic/esclient"
	"github.com/rendezvous-ml/rendezvous/pipeline/config"
	"github.com/rendezvous-ml/rendezvous/pipeline/serde"
	"github.com/rendezvous-ml/rendezvous/pipeline/stage"
	"github.com/rendezvous-ml/rendezvous/schemas"
)

// encoderOnlyRegistry hands out ids to the schemas the test encodes with;
// the serde then knows every writer schema and never looks one up.
type encoderOnlyRegistry struct{ ids map[string]int }

func (r *encoderOnlyRegistry) Register(_ context.Context, _, schema string) (int, error) {
	if _, ok := r.ids[schema]; !ok {
		r.ids[schema] = len(r.ids) + 1
	}
	return r.ids[schema], nil
}

func (r *encoderOnlyRegistry) SchemaByID(_ context.Context, id int) (string, error) {
	return "", fmt.Errorf("schema %d: %w", id, serde.ErrUnknownSchema)
}

// TestConnectorWritesBatches indexes two batches of encoded records
// through the connector's own path (decode, document, bulk): each
// document is the one DecisionDoc or DecoyDoc gives for its record,
// marked compact, although all of a batch's documents share one buffer
// and the second batch reuses the first's.
func TestConnectorWritesBatches(t *testing.T) {
	env, err := stage.NewEnv("es-connector", config.Defaults())
	if err != nil {
		t.Fatal(err)
	}
	env.Serde = serde.New(&encoderOnlyRegistry{ids: map[string]int{}})
	ctx := context.Background()
	decEnc, err := env.Encoder(ctx, env.Topics.Decisions, schemas.Decision)
	if err != nil {
		t.Fatal(err)
	}
	inEnc, err := env.Encoder(ctx, env.Topics.Decoy, schemas.Input)
	if err != nil {
		t.Fatal(err)
	}
	cfg := Defaults()
	cfg.Common = env.Cfg
	c := &connector{cfg: cfg, env: env, decRd: env.Reader(schemas.Decision), inRd: env.Reader(schemas.Input)}

	var offset int64
	batch := func(n int) (recs []*kgo.Record, want map[string][]byte) {
		want = map[string][]byte{}
		for i := range n {
			d, err := elastictest.Decision("iris")
			if err != nil {
				t.Fatal(err)
			}
			in, err := elastictest.Input("iris")
			if err != nil {
				t.Fatal(err)
			}
			id := fmt.Sprintf("request \"%d\" \u00e9", offset)
			d["request_id"], in["request_id"] = id, id
			d["features"].(map[string]any)["sepalLength"] = float64(i) / 7
			for _, x := range []struct {
				enc   *serde.Encoder
				topic string
				rec   map[string]any
				doc   func(map[string]any) ([]byte, error)
			}{{decEnc, env.Topics.Decisions, d, refDecisionDoc}, {inEnc, env.Topics.Decoy, in, refDecoyDoc}} {
				v, err := x.enc.Encode(nil, x.rec)
				if err != nil {
					t.Fatal(err)
				}
				r := &kgo.Record{Topic: x.topic, Partition: int32(i % 2), Offset: offset, Value: v, Timestamp: elastictest.When}
				offset++
				if want[DocID(r)], err = x.doc(x.rec); err != nil {
					t.Fatal(err)
				}
				recs = append(recs, r)
			}
		}
		return recs, want
	}

	for _, n := range []int{300, 40} {
		recs, want := batch(n)
		sent := 0
		c.st = &storer{
			bulk: func(_ context.Context, docs []esclient.Doc) ([]esclient.ItemResult, error) {
				res := make([]esclient.ItemResult, len(docs))
				for i, d := range docs {
					if !d.Compact || !bytes.Equal(d.Body, want[d.ID]) {
						t.Errorf("%s (compact %v):\n%s\nwant\n%s", d.ID, d.Compact, d.Body, want[d.ID])
					}
					res[i] = esclient.ItemResult{Doc: d, Status: 201}
				}
				sent += len(docs)
				return res, nil
			},
			log:     slog.New(slog.NewTextHandler(io.Discard, nil)),
			count:   func(string, string) {},
			paused:  func(bool) {},
			minWait: 1, maxWait: 1,
		}
		if err := c.index(ctx, ctx, recs); err != nil {
			t.Fatal(err)
		}
		if sent != len(recs) {
			t.Errorf("%d documents sent for %d records", sent, len(recs))
		}
	}

	// A record JSON cannot carry is poison, and leaves the batch's buffer
	// as it was.
	d, _ := elastictest.Decision("iris")
	d["features"].(map[string]any)["petalWidth"] = math.NaN()
	v, err := decEnc.Encode(nil, d)
	if err != nil {
		t.Fatal(err)
	}
	before := len(c.w.b)
	_, err = c.document(ctx, &kgo.Record{Topic: env.Topics.Decisions, Value: v, Timestamp: elastictest.When})
	if !errors.Is(err, stage.ErrPoison) || len(c.w.b) != before {
		t.Errorf("NaN feature: %v, buffer %d -> %d bytes", err, before, len(c.w.b))
	}
}
