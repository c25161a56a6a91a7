package archive

import (
	"bufio"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
)

// The archive writes Avro object container files by hand rather than
// through goavro's OCF writer, because the records are already Avro: the
// body of a Confluent-framed record is a valid datum of its writer schema,
// so it is appended as is, behind an envelope of its own fields (topic,
// partition, offset, ...). Any standard Avro tool reads the result.

var ocfMagic = []byte{'O', 'b', 'j', 1}

func appendLong(b []byte, v int64) []byte {
	return binary.AppendVarint(b, v) // Avro longs are zig-zag varints
}

func appendBytes(b []byte, p []byte) []byte {
	b = appendLong(b, int64(len(p)))
	return append(b, p...)
}

// syncMarker derives a file's 16-byte sync marker from its identity, so a
// file rewritten after a crash is byte for byte the same.
func syncMarker(identity string) [16]byte {
	sum := sha256.Sum256([]byte(identity))
	var m [16]byte
	copy(m[:], sum[:16])
	return m
}

// ocfWriter writes blocks of pre-encoded datums.
type ocfWriter struct {
	w     *bufio.Writer
	sync  [16]byte
	block []byte
	count int64
	n     int64 // bytes written to w
}

func newOCFWriter(w io.Writer, schema string, sync [16]byte) (*ocfWriter, error) {
	o := &ocfWriter{w: bufio.NewWriterSize(w, 256<<10), sync: sync}
	var h []byte
	h = append(h, ocfMagic...)
	h = appendLong(h, 2) // metadata map: one block of two entries
	h = appendBytes(h, []byte("avro.schema"))
	h = appendBytes(h, []byte(schema))
	h = appendBytes(h, []byte("avro.codec"))
	h = appendBytes(h, []byte("null"))
	h = appendLong(h, 0)
	h = append(h, sync[:]...)
	if _, err := o.w.Write(h); err != nil {
		return nil, fmt.Errorf("write container header: %w", err)
	}
	o.n = int64(len(h))
	return o, nil
}

// append adds one encoded datum to the current block.
func (o *ocfWriter) append(datum []byte) {
	o.block = append(o.block, datum...)
	o.count++
}

// size is the file's size once the current block is written.
func (o *ocfWriter) size() int64 { return o.n + int64(len(o.block)) + 40 }

// flushBlock writes the current block, if any.
func (o *ocfWriter) flushBlock() error {
	if o.count == 0 {
		return nil
	}
	var h []byte
	h = appendLong(h, o.count)
	h = appendLong(h, int64(len(o.block)))
	for _, p := range [][]byte{h, o.block, o.sync[:]} {
		if _, err := o.w.Write(p); err != nil {
			return fmt.Errorf("write container block: %w", err)
		}
	}
	o.n += int64(len(h) + len(o.block) + len(o.sync))
	o.block = o.block[:0]
	o.count = 0
	return nil
}

func (o *ocfWriter) close() error {
	if err := o.flushBlock(); err != nil {
		return err
	}
	return o.w.Flush()
}
