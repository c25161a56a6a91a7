package elastic

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rendezvous-ml/rendezvous/connectors/elastic/elastictest"
	"github.com/rendezvous-ml/rendezvous/connectors/elastic/esclient"
)

// benchRecords are n decisions and n model inputs as the decoder gives
// them, each with its own request id and features so that no two
// documents are alike.
func benchRecords(b *testing.B, n int) (decisions, inputs []map[string]any) {
	b.Helper()
	for i := range n {
		d, err := elastictest.Decision("iris")
		if err != nil {
			b.Fatal(err)
		}
		in, err := elastictest.Input("iris")
		if err != nil {
			b.Fatal(err)
		}
		id := fmt.Sprintf("27a927cc-2b82-4119-a0f7-%012d", i)
		d["request_id"], in["request_id"] = id, id
		f := float64(i%70) / 10
		d["features"].(map[string]any)["sepalLength"] = 4.3 + f
		in["features"].(map[string]any)["petalWidth"] = 0.1 + f/3
		decisions, inputs = append(decisions, d), append(inputs, in)
	}
	return decisions, inputs
}

// benchDocs are the bulk documents of n predict calls: a score-log and a
// decoy-log document each, under the ids and indices the connector gives.
func benchDocs(b *testing.B, n int) []esclient.Doc {
	b.Helper()
	decisions, inputs := benchRecords(b, n)
	docs := make([]esclient.Doc, 0, 2*n)
	for i := range n {
		db, err := DecisionDoc(decisions[i])
		if err != nil {
			b.Fatal(err)
		}
		ib, err := DecoyDoc(inputs[i])
		if err != nil {
			b.Fatal(err)
		}
		dr := &kgo.Record{Topic: "rdv.iris.decisions", Partition: int32(i % 3), Offset: int64(1_000_000 + i), Timestamp: elastictest.When}
		ir := &kgo.Record{Topic: "rdv.iris.decoy", Partition: int32(i % 3), Offset: int64(1_000_000 + i), Timestamp: elastictest.When}
		docs = append(docs,
			esclient.Doc{Index: IndexName("score-log", "iris", false, dr), ID: DocID(dr), Body: db, Compact: true},
			esclient.Doc{Index: IndexName("decoy-log", "iris", false, ir), ID: DocID(ir), Body: ib, Compact: true})
	}
	return docs
}

// BenchmarkDocs is the document cost of one predict call: its decision
// and its model input turned into their two JSON documents, each in a
// slice of its own ("alone", as DecisionDoc and DecoyDoc return them) and
// one after the other in a buffer reused from batch to batch ("batch", as
// the connector writes them).
func BenchmarkDocs(b *testing.B) {
	const n = 64
	decisions, inputs := benchRecords(b, n)
	b.Run("alone", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if _, err := DecisionDoc(decisions[i%n]); err != nil {
				b.Fatal(err)
			}
			if _, err := DecoyDoc(inputs[i%n]); err != nil {
				b.Fatal(err)
			}
			i++
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(2*i), "ns/doc")
	})
	b.Run("batch", func(b *testing.B) {
		var w jsonw
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if i%n == 0 {
				w.b = w.b[:0]
			}
			if err := w.decision(decisions[i%n]); err != nil {
				b.Fatal(err)
			}
			if err := w.decoy(inputs[i%n]); err != nil {
				b.Fatal(err)
			}
			i++
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(2*i), "ns/doc")
	})
}

// BenchmarkBulkBody builds the body of one bulk call of 500 documents.
func BenchmarkBulkBody(b *testing.B) {
	docs := benchDocs(b, 250)
	results := make([]esclient.ItemResult, len(docs))
	b.ReportAllocs()
	for b.Loop() {
		if _, sent := esclient.BulkBody("index", docs, results); len(sent) != len(docs) {
			b.Fatalf("%d of %d documents in the body", len(sent), len(docs))
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(docs)), "ns/doc")
}

// BenchmarkBulk is a bulk call of 500 documents through esclient, against
// a server that reads the request and answers a canned success: the
// connector's side of storer.send.
func BenchmarkBulk(b *testing.B) {
	docs := benchDocs(b, 250)
	var answer strings.Builder
	answer.WriteString(`{"took":3,"errors":false,"items":[`)
	for i, d := range docs {
		if i > 0 {
			answer.WriteByte(',')
		}
		fmt.Fprintf(&answer, `{"index":{"_index":%q,"_id":%q,"_version":1,"result":"created","_shards":{"total":1,"successful":1,"failed":0},"_seq_no":%d,"_primary_term":1,"status":201}}`, d.Index, d.ID, i)
	}
	answer.WriteString("]}")
	canned := []byte(answer.String())
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("X-Elastic-Product", "Elasticsearch")
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(canned)
	}))
	defer srv.Close()
	ix, err := esclient.New(esclient.Config{URLs: []string{srv.URL}})
	if err != nil {
		b.Fatal(err)
	}
	defer ix.(io.Closer).Close()
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		res, err := ix.Bulk(ctx, docs)
		if err != nil || len(res) != len(docs) || !res[len(res)-1].OK() {
			b.Fatalf("bulk: %v", err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(docs)), "ns/doc")
}
