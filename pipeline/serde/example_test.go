package serde_test

import (
	"context"
	"fmt"
	"log"

	"github.com/rendezvous-ml/rendezvous/pipeline/serde"
)

// A producer registers its schema and encodes a record in the Confluent wire
// format; a consumer built against a newer schema, with one more field that
// has a default, decodes it.
func ExampleEncoder_Encode() {
	ctx := context.Background()
	reg := newMemRegistry() // any serde.Registry: the real client or a fake

	const v1 = `{"type":"record","name":"Score","fields":[
		{"name":"model","type":"string"},
		{"name":"compute_us","type":"int"}]}`
	const v2 = `{"type":"record","name":"Score","fields":[
		{"name":"model","type":"string"},
		{"name":"compute_us","type":"long"},
		{"name":"role","type":"string","default":"champion"}]}`

	enc, err := serde.New(reg).Encoder(ctx, "rdv.iris.scores-value", v1)
	if err != nil {
		log.Fatal(err)
	}
	data, err := enc.Encode(nil, map[string]any{"model": "dt", "compute_us": int32(120)})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("magic %d, schema id %d, %d bytes\n", data[0], enc.ID, len(data))

	reader, err := serde.Parse(v2)
	if err != nil {
		log.Fatal(err)
	}
	rec, err := serde.New(reg).Decode(ctx, data, reader)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("model=%s compute_us=%d (%T) role=%s\n",
		serde.Str(rec, "model"), serde.Long(rec, "compute_us"), rec["compute_us"], serde.Str(rec, "role"))
	// Output:
	// magic 0, schema id 1, 10 bytes
	// model=dt compute_us=120 (int64) role=champion
}
