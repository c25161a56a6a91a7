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

func appendString(b []byte, s string) []byte {
	b = appendLong(b, int64(len(s)))
	return append(b, s...)
}

// syncMarker derives a file's 16-byte sync marker from its identity, so a
// file rewritten after a crash is byte for byte the same.
func syncMarker(identity string) [16]byte {
	sum := sha256.Sum256([]byte(identity))
	var m [16]byte
	copy(m[:], sum[:16])
	return m
}

// ocfWriter writes blocks of pre-encoded datums. One is reused for every
// file of a partition, so its buffers are allocated once.
type ocfWriter struct {
	w     *bufio.Writer
	sync  [16]byte
	block []byte
	head  []byte
	count int64
	n     int64 // bytes written to w
}

func newOCFWriter(w io.Writer, schema string, sync [16]byte) (*ocfWriter, error) {
	o := &ocfWriter{}
	if err := o.reset(w, schema, sync); err != nil {
		return nil, err
	}
	return o, nil
}

// reset starts a new container file on w: it writes the header.
func (o *ocfWriter) reset(w io.Writer, schema string, sync [16]byte) error {
	if o.w == nil {
		o.w = bufio.NewWriterSize(w, 256<<10)
	} else {
		o.w.Reset(w)
	}
	o.sync, o.block, o.count, o.n = sync, o.block[:0], 0, 0
	h := o.head[:0]
	h = append(h, ocfMagic...)
	h = appendLong(h, 2) // metadata map: one block of two entries
	h = appendString(h, "avro.schema")
	h = appendString(h, schema)
	h = appendString(h, "avro.codec")
	h = appendString(h, "null")
	h = appendLong(h, 0)
	h = append(h, sync[:]...)
	o.head = h
	if _, err := o.w.Write(h); err != nil {
		return fmt.Errorf("write container header: %w", err)
	}
	o.n = int64(len(h))
	return nil
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
	h := appendLong(o.head[:0], o.count)
	h = appendLong(h, int64(len(o.block)))
	o.head = h
	if _, err := o.w.Write(h); err != nil {
		return fmt.Errorf("write container block: %w", err)
	}
	if _, err := o.w.Write(o.block); err != nil {
		return fmt.Errorf("write container block: %w", err)
	}
	if _, err := o.w.Write(o.sync[:]); err != nil {
		return fmt.Errorf("write container block: %w", err)
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
