package archive

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/hamba/avro/v2"
	"github.com/linkedin/goavro/v2"
)

// The archive copies each record's Avro body into the file as is, so every
// body must be a valid datum of its writer schema: one bad body would make
// the whole file unreadable. Decoding each record with goavro proves that,
// but builds a map per record and costs more than the rest of the write
// path together. A validator walks the bytes instead, against a plan
// compiled once per schema, and allocates nothing.
//
// It accepts exactly what goavro's decoder accepts, except that it is
// stricter where goavro is lax and other Avro readers are not: an int or
// long longer than its 5 or 10 bytes or out of range, a string that is not
// UTF-8, and nesting deeper than maxDepth. Such a record goes to a raw file.
// Schemas it cannot plan (goavro's validated-string extension, or one the
// Avro parser rejects) fall back to goavro's decoder.

// errStrict marks a datum goavro would decode but the validator refuses.
var errStrict = errors.New("not valid Avro")

const maxDepth = 10000

type vkind uint8

const (
	vNull vkind = iota
	vBool
	vInt
	vLong
	vFloat
	vDouble
	vBytes
	vString
	vFixed
	vEnum
	vArray
	vMap
	vUnion
	vRecord
	vCall // in a prog: check a record compiled on its own
)

type vnode struct {
	kind     vkind
	n        int      // fixed size, enum symbols
	min      int      // fewest bytes a datum takes
	items    *vnode   // array items, map values
	branches []*vnode // union branches, record fields
}

// bodyCheck validates one datum of a writer schema.
type bodyCheck struct {
	root  *vnode
	prog  *prog
	codec *goavro.Codec // the fallback, when root is nil
	keys  [][]byte      // map keys, for the duplicate check
}

func newBodyCheck(text string) (*bodyCheck, error) {
	if !strings.Contains(text, "validated-string") {
		if s, err := avro.ParseWithCache(text, "", &avro.SchemaCache{}); err == nil {
			memo := map[string]*vnode{}
			if root, err := plan(s, memo); err == nil {
				minWidths(root, map[*vnode]bool{})
				return &bodyCheck{root: root, prog: compile(root)}, nil
			}
		}
	}
	codec, err := goavro.NewCodec(text)
	if err != nil {
		return nil, err
	}
	return &bodyCheck{codec: codec}, nil
}

func plan(s avro.Schema, memo map[string]*vnode) (*vnode, error) {
	switch s := s.(type) {
	case *avro.NullSchema:
		return &vnode{kind: vNull}, nil
	case *avro.PrimitiveSchema:
		switch s.Type() {
		case avro.Null:
			return &vnode{kind: vNull}, nil
		case avro.Boolean:
			return &vnode{kind: vBool}, nil
		case avro.Int:
			return &vnode{kind: vInt}, nil
		case avro.Long:
			return &vnode{kind: vLong}, nil
		case avro.Float:
			return &vnode{kind: vFloat}, nil
		case avro.Double:
			return &vnode{kind: vDouble}, nil
		case avro.Bytes:
			return &vnode{kind: vBytes}, nil
		case avro.String:
			return &vnode{kind: vString}, nil
		}
	case *avro.RecordSchema:
		if n, ok := memo[s.FullName()]; ok {
			return n, nil
		}
		n := &vnode{kind: vRecord}
		memo[s.FullName()] = n
		for _, f := range s.Fields() {
			fn, err := plan(f.Type(), memo)
			if err != nil {
				return nil, err
			}
			n.branches = append(n.branches, fn)
		}
		return n, nil
	case *avro.EnumSchema:
		n := &vnode{kind: vEnum, n: len(s.Symbols())}
		memo[s.FullName()] = n
		return n, nil
	case *avro.FixedSchema:
		n := &vnode{kind: vFixed, n: s.Size()}
		memo[s.FullName()] = n
		return n, nil
	case *avro.ArraySchema:
		items, err := plan(s.Items(), memo)
		if err != nil {
			return nil, err
		}
		return &vnode{kind: vArray, items: items}, nil
	case *avro.MapSchema:
		values, err := plan(s.Values(), memo)
		if err != nil {
			return nil, err
		}
		return &vnode{kind: vMap, items: values}, nil
	case *avro.UnionSchema:
		n := &vnode{kind: vUnion}
		for _, t := range s.Types() {
			b, err := plan(t, memo)
			if err != nil {
				return nil, err
			}
			n.branches = append(n.branches, b)
		}
		return n, nil
	case *avro.RefSchema:
		if n, ok := memo[s.Schema().FullName()]; ok {
			return n, nil
		}
		return plan(s.Schema(), memo)
	}
	return nil, fmt.Errorf("no plan for schema type %s", s.Type())
}

// minWidths sets each node's minimum encoded size, which bounds a block
// count by the bytes left. A record that contains itself takes at least
// the other fields' widths; counting it as 0 stays a lower bound.
func minWidths(n *vnode, busy map[*vnode]bool) int {
	if busy[n] {
		return n.min
	}
	busy[n] = true
	defer delete(busy, n)
	switch n.kind {
	case vNull:
		n.min = 0
	case vBool, vInt, vLong, vBytes, vString, vEnum:
		n.min = 1
	case vFloat:
		n.min = 4
	case vDouble:
		n.min = 8
	case vFixed:
		n.min = n.n
	case vArray, vMap:
		n.min = 1
		minWidths(n.items, busy)
	case vUnion:
		least := math.MaxInt32
		for _, b := range n.branches {
			least = min(least, minWidths(b, busy))
		}
		if len(n.branches) == 0 {
			least = 0
		}
		n.min = 1 + least
	case vRecord:
		sum := 0
		for _, f := range n.branches {
			sum += minWidths(f, busy)
		}
		n.min = sum
	}
	return n.min
}

// validate reports whether body is exactly one datum of the schema.
func (c *bodyCheck) validate(body []byte) error {
	if c.prog == nil {
		_, rest, err := c.codec.NativeFromBinary(body)
		if err != nil {
			return err
		}
		if len(rest) != 0 {
			return fmt.Errorf("%d trailing bytes after the datum", len(rest))
		}
		return nil
	}
	c.keys = c.keys[:0]
	rest, err := c.run(c.prog, body, 0)
	if err != nil {
		return err
	}
	if len(rest) != 0 {
		return fmt.Errorf("%d trailing bytes after the datum", len(rest))
	}
	return nil
}

// A prog is a schema flattened for checking: a record is the sequence of
// its fields, so nested records are inlined into one list of steps, and
// only unions, arrays, maps and recursive records jump to another prog.
type prog struct {
	ops []op
}

type op struct {
	kind vkind // a leaf kind, vUnion, vArray, vMap, or vCall for a record
	n    int   // fixed size, enum symbols
	min  int   // fewest bytes of one array item or map entry
	sub  *prog // array items, map values, a called record
	alts []*prog
	leaf bool // sub is a single leaf step (for array items and map values)
}

const inlineBudget = 4096 // steps; a schema past it calls instead of inlining

func compile(root *vnode) *prog {
	cc := compiler{records: map[*vnode]*prog{}, inlining: map[*vnode]bool{}}
	p := &prog{}
	cc.emit(p, root)
	return p
}

type compiler struct {
	records  map[*vnode]*prog // records compiled on their own, to be called
	inlining map[*vnode]bool  // records being inlined: a field of one of them is a recursion
	steps    int
}

func (cc *compiler) emit(p *prog, n *vnode) {
	cc.steps++
	switch n.kind {
	case vRecord:
		if cc.inlining[n] || cc.steps > inlineBudget {
			p.ops = append(p.ops, op{kind: vCall, sub: cc.record(n)})
			return
		}
		cc.inlining[n] = true
		for _, f := range n.branches {
			cc.emit(p, f)
		}
		delete(cc.inlining, n)
	case vUnion:
		o := op{kind: vUnion}
		for _, b := range n.branches {
			o.alts = append(o.alts, cc.sub(b))
		}
		p.ops = append(p.ops, o)
	case vArray, vMap:
		o := op{kind: n.kind, min: n.items.min, sub: cc.sub(n.items)}
		if n.kind == vMap {
			o.min++ // the key
		}
		o.leaf = len(o.sub.ops) == 1 && o.sub.ops[0].kind <= vEnum
		p.ops = append(p.ops, o)
	default:
		p.ops = append(p.ops, op{kind: n.kind, n: n.n})
	}
}

func (cc *compiler) sub(n *vnode) *prog {
	p := &prog{}
	cc.emit(p, n)
	return p
}

// record compiles a record once, as a prog of its own.
func (cc *compiler) record(n *vnode) *prog {
	if p, ok := cc.records[n]; ok {
		return p
	}
	p := &prog{}
	cc.records[n] = p
	saved := cc.inlining
	cc.inlining = map[*vnode]bool{n: true}
	for _, f := range n.branches {
		cc.emit(p, f)
	}
	cc.inlining = saved
	return p
}

var errShort = errors.New("short buffer")

// readLong reads a zig-zag varint of at most 10 bytes.
func readLong(b []byte) (int64, []byte, error) {
	if len(b) > 0 && b[0] < 0x80 { // the common case: lengths, indexes, counts
		return int64(b[0]>>1) ^ -int64(b[0]&1), b[1:], nil
	}
	var u uint64
	for i := 0; i < len(b); i++ {
		c := b[i]
		if i == 9 && c > 1 {
			return 0, nil, fmt.Errorf("%w: long overflows 64 bits", errStrict)
		}
		u |= uint64(c&0x7f) << (7 * i)
		if c < 0x80 {
			return int64(u>>1) ^ -int64(u&1), b[i+1:], nil
		}
		if i == 9 {
			return 0, nil, fmt.Errorf("%w: long longer than 10 bytes", errStrict)
		}
	}
	return 0, nil, errShort
}

// skipLong skips a long whose value does not matter.
func skipLong(b []byte) ([]byte, error) {
	if len(b) >= 8 {
		// The first byte without the continuation bit, 8 at a time.
		w := binary.LittleEndian.Uint64(b)
		if stop := ^w & 0x8080808080808080; stop != 0 {
			return b[bits.TrailingZeros64(stop)/8+1:], nil
		}
	}
	n := min(len(b), 10)
	for i := 0; i < n; i++ {
		if b[i] < 0x80 {
			if i == 9 && b[i] > 1 {
				return nil, fmt.Errorf("%w: long overflows 64 bits", errStrict)
			}
			return b[i+1:], nil
		}
	}
	if n == 10 {
		return nil, fmt.Errorf("%w: long longer than 10 bytes", errStrict)
	}
	return nil, errShort
}

// validUTF8 is utf8.Valid with a quicker start for short ASCII strings.
func validUTF8(p []byte) bool {
	q := p
	for len(q) >= 8 {
		if binary.LittleEndian.Uint64(q)&0x8080808080808080 != 0 {
			return utf8.Valid(p)
		}
		q = q[8:]
	}
	for _, c := range q {
		if c >= 0x80 {
			return utf8.Valid(p)
		}
	}
	return true
}

// readInt skips a zig-zag varint of at most 5 bytes within 32 bits.
func readInt(b []byte) ([]byte, error) {
	n := min(len(b), 5)
	for i := 0; i < n; i++ {
		if b[i] < 0x80 {
			if i == 4 && b[i] > 0x0f {
				return nil, fmt.Errorf("%w: int overflows 32 bits", errStrict)
			}
			return b[i+1:], nil
		}
	}
	if n == 5 {
		return nil, fmt.Errorf("%w: int longer than 5 bytes", errStrict)
	}
	return nil, errShort
}

// readLen reads a bytes or string length and checks the bytes are there.
func readLen(b []byte) (int, []byte, error) {
	n, b, err := readLong(b)
	if err != nil {
		return 0, nil, err
	}
	if n < 0 {
		return 0, nil, fmt.Errorf("negative length %d", n)
	}
	if n > int64(len(b)) {
		return 0, nil, errShort
	}
	return int(n), b, nil
}

// readCount reads an array or map block count, and the byte size that
// follows a negative one.
func readCount(b []byte) (int64, []byte, error) {
	n, b, err := readLong(b)
	if err != nil {
		return 0, nil, err
	}
	if n < 0 {
		if n == math.MinInt64 {
			return 0, nil, fmt.Errorf("block count %d", n)
		}
		n = -n
		if _, b, err = readLong(b); err != nil {
			return 0, nil, err
		}
	}
	if n > math.MaxInt32 {
		return 0, nil, fmt.Errorf("block count %d is over %d", n, math.MaxInt32)
	}
	return n, b, nil
}

// leaf checks one datum of a leaf kind (null to enum).
func leaf(o *op, b []byte) ([]byte, error) {
	switch o.kind {
	case vNull:
		return b, nil
	case vBool:
		if len(b) < 1 {
			return nil, errShort
		}
		if b[0] > 1 {
			return nil, fmt.Errorf("boolean byte %d", b[0])
		}
		return b[1:], nil
	case vInt:
		return readInt(b)
	case vLong:
		return skipLong(b)
	case vFloat:
		if len(b) < 4 {
			return nil, errShort
		}
		return b[4:], nil
	case vDouble:
		if len(b) < 8 {
			return nil, errShort
		}
		return b[8:], nil
	case vBytes:
		l, b, err := readLen(b)
		if err != nil {
			return nil, err
		}
		return b[l:], nil
	case vString:
		return skipString(b)
	case vFixed:
		if len(b) < o.n {
			return nil, errShort
		}
		return b[o.n:], nil
	case vEnum:
		i, b, err := readLong(b)
		if err != nil {
			return nil, err
		}
		if i < 0 || i >= int64(o.n) {
			return nil, fmt.Errorf("enum index %d of %d symbols", i, o.n)
		}
		return b, nil
	}
	return nil, fmt.Errorf("unknown leaf kind %d", o.kind)
}

func (c *bodyCheck) run(p *prog, b []byte, depth int) ([]byte, error) {
	if depth > maxDepth {
		return nil, fmt.Errorf("%w: nested deeper than %d", errStrict, maxDepth)
	}
	var err error
	for i := range p.ops {
		o := &p.ops[i]
		switch o.kind {
		case vLong: // the commonest steps first, without a call
			if len(b) > 0 && b[0] < 0x80 {
				b = b[1:]
			} else if b, err = skipLong(b); err != nil {
				return nil, err
			}
		case vString:
			if b, err = skipString(b); err != nil {
				return nil, err
			}
		case vDouble:
			if len(b) < 8 {
				return nil, errShort
			}
			b = b[8:]
		case vUnion:
			var idx int64
			if len(b) > 0 && b[0] < 0x80 {
				idx, b = int64(b[0]>>1)^-int64(b[0]&1), b[1:]
			} else if idx, b, err = readLong(b); err != nil {
				return nil, err
			}
			if idx < 0 || idx >= int64(len(o.alts)) {
				return nil, fmt.Errorf("union index %d of %d branches", idx, len(o.alts))
			}
			alt := o.alts[idx]
			switch {
			case len(alt.ops) != 1 || alt.ops[0].kind > vEnum:
				b, err = c.run(alt, b, depth+1)
			case alt.ops[0].kind == vNull:
			case alt.ops[0].kind == vString:
				b, err = skipString(b)
			default:
				b, err = leaf(&alt.ops[0], b)
			}
			if err != nil {
				return nil, err
			}
		case vArray, vMap:
			if b, err = c.repeated(o, b, depth); err != nil {
				return nil, err
			}
		case vCall:
			if b, err = c.run(o.sub, b, depth+1); err != nil {
				return nil, err
			}
		default:
			if b, err = leaf(o, b); err != nil {
				return nil, err
			}
		}
	}
	return b, nil
}

// skipString checks a string: its length, and that it is UTF-8.
func skipString(b []byte) ([]byte, error) {
	var l int
	if len(b) > 0 && b[0] < 0x80 && b[0]&1 == 0 {
		l, b = int(b[0]>>1), b[1:]
		if l > len(b) {
			return nil, errShort
		}
	} else {
		var err error
		if l, b, err = readLen(b); err != nil {
			return nil, err
		}
	}
	if !validUTF8(b[:l]) {
		return nil, fmt.Errorf("%w: string is not UTF-8", errStrict)
	}
	return b[l:], nil
}

// repeated checks an array's items or a map's entries, block by block.
func (c *bodyCheck) repeated(o *op, b []byte, depth int) ([]byte, error) {
	keys0 := len(c.keys)
	for {
		count, rest, err := readCount(b)
		if err != nil {
			return nil, err
		}
		b = rest
		if count == 0 {
			break
		}
		if o.min > 0 && count > int64(len(b)/o.min) {
			return nil, errShort
		}
		for i := int64(0); i < count; i++ {
			if o.kind == vMap {
				l, rest, err := readLen(b)
				if err != nil {
					return nil, err
				}
				if !validUTF8(rest[:l]) {
					return nil, fmt.Errorf("%w: map key is not UTF-8", errStrict)
				}
				c.keys = append(c.keys, rest[:l])
				b = rest[l:]
			}
			if o.leaf {
				b, err = leaf(&o.sub.ops[0], b)
			} else {
				b, err = c.run(o.sub, b, depth+1)
			}
			if err != nil {
				return nil, err
			}
		}
	}
	if o.kind == vMap {
		if dup := duplicate(c.keys[keys0:]); dup != nil {
			return nil, fmt.Errorf("duplicate map key %q", dup)
		}
		c.keys = c.keys[:keys0]
	}
	return b, nil
}

// duplicate returns a key found twice, reordering keys.
func duplicate(keys [][]byte) []byte {
	if len(keys) <= 8 {
		for i := range keys {
			for j := i + 1; j < len(keys); j++ {
				if bytes.Equal(keys[i], keys[j]) {
					return keys[i]
				}
			}
		}
		return nil
	}
	slices.SortFunc(keys, bytes.Compare)
	for i := 1; i < len(keys); i++ {
		if bytes.Equal(keys[i-1], keys[i]) {
			return keys[i]
		}
	}
	return nil
}
