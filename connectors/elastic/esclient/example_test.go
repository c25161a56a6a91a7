package esclient_test

import (
	"context"
	"fmt"
	"io"

	"github.com/rendezvous-ml/rendezvous/connectors/elastic/esclient"
	"github.com/rendezvous-ml/rendezvous/testcontainers/esfake"
)

// Index two decisions, one of which does not fit the template's mapping,
// and branch on the per-document outcome.
func Example() {
	fake := esfake.New()
	url, err := fake.Start("")
	if err != nil {
		panic(err)
	}
	defer fake.Close()

	ix, err := esclient.New(esclient.Config{URLs: []string{url}})
	if err != nil {
		panic(err)
	}
	defer ix.(io.Closer).Close()
	ctx := context.Background()

	template := []byte(`{"index_patterns":["score-log*"],"priority":100,
	  "template":{"mappings":{"properties":{"ts":{"type":"date"},"score":{"type":"double"}}}}}`)
	if err := ix.EnsureTemplate(ctx, "score-log", template); err != nil {
		panic(err)
	}
	results, err := ix.Bulk(ctx, []esclient.Doc{
		{Index: "score-log-2024.05.01", ID: "dec-1", Body: []byte(`{"ts":"2024-05-01T10:00:00Z","score":0.93}`)},
		{Index: "score-log-2024.05.01", ID: "dec-2", Body: []byte(`{"ts":"last tuesday","score":0.12}`)},
	})
	if err != nil {
		// The whole request failed: retry the batch if esclient.IsRetryable(err).
		panic(err)
	}
	for _, r := range results {
		switch {
		case r.OK():
			fmt.Println(r.Doc.ID, r.Status, r.Result)
		case r.Retryable():
			fmt.Println(r.Doc.ID, "retry later:", r.ErrType)
		case r.Permanent():
			fmt.Println(r.Doc.ID, "dead-letter:", r.ErrType)
		}
	}
	fmt.Println("stored:", fake.DocCount("score-log*"))
	// Output:
	// dec-1 201 created
	// dec-2 dead-letter: document_parsing_exception
	// stored: 1
}
