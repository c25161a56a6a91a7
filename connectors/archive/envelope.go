package archive

import (
	"fmt"

	"github.com/twmb/franz-go/pkg/kgo"
)

// The archive's record is an envelope around the original value:
//
//	topic, partition, offset, timestamp_ms, key, schema_id, value
//
// where value has the writer's own schema, so the file is self-describing.
// Records that could not be decoded use rawSchema: the reason and the
// original bytes.
const envelopeHead = `{"type":"record","name":"ArchivedRecord","namespace":"rdv.archive","fields":[` +
	`{"name":"topic","type":"string"},` +
	`{"name":"partition","type":"int"},` +
	`{"name":"offset","type":"long"},` +
	`{"name":"timestamp_ms","type":"long"},` +
	`{"name":"key","type":"bytes"},` +
	`{"name":"schema_id","type":"int"},`

func envelopeSchema(valueSchema string) string {
	return fmt.Sprintf(`%s{"name":"value","type":%s}]}`, envelopeHead, valueSchema)
}

var rawSchema = envelopeHead + `{"name":"error","type":"string"},{"name":"value","type":"bytes"}]}`

func encodeHead(r *kgo.Record) []byte {
	return appendHead(make([]byte, 0, 64+len(r.Topic)+len(r.Key)+len(r.Value)), r)
}

// appendHead appends the envelope's fields before the value: topic,
// partition, offset, timestamp_ms, key and schema_id (the framed id, or -1
// when the value is not in the wire format).
func appendHead(b []byte, r *kgo.Record) []byte {
	b = appendString(b, r.Topic)
	b = appendLong(b, int64(r.Partition))
	b = appendLong(b, r.Offset)
	b = appendLong(b, r.Timestamp.UnixMilli())
	b = appendBytes(b, r.Key)
	id := int64(-1)
	if len(r.Value) >= 5 && r.Value[0] == 0 {
		id = int64(int32(uint32(r.Value[1])<<24 | uint32(r.Value[2])<<16 | uint32(r.Value[3])<<8 | uint32(r.Value[4])))
	}
	return appendLong(b, id)
}
