package esfake

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// jnode is a JSON value that remembers where it started in its source, so
// that document errors can carry ES's "[line:column]" prefix, and keeps
// object keys in order, so that value previews read like ES's.
type jnode struct {
	kind  jkind
	str   string // string value, or the literal text of a number
	b     bool
	obj   []jkv
	arr   []*jnode
	start int // byte offset of the first character of the value
}

type jkv struct {
	key      string
	keyStart int
	val      *jnode
}

type jkind int

const (
	jNull jkind = iota
	jBool
	jNumber
	jString
	jObject
	jArray
)

// parseJSON parses a complete JSON text. On a syntax error it returns the
// byte offset where parsing stopped.
func parseJSON(src []byte) (*jnode, int, error) {
	if !json.Valid(src) {
		var v any
		err := json.Unmarshal(src, &v)
		off := 0
		var se *json.SyntaxError
		if errors.As(err, &se) {
			off = int(se.Offset)
		}
		if err == nil {
			err = errors.New("invalid JSON")
		}
		return nil, off, err
	}
	p := &jparser{src: src}
	n := p.value()
	return n, 0, nil
}

type jparser struct {
	src []byte
	pos int
}

func (p *jparser) ws() {
	for p.pos < len(p.src) {
		switch p.src[p.pos] {
		case ' ', '\t', '\n', '\r':
			p.pos++
		default:
			return
		}
	}
}

// value parses a value from input already known to be valid JSON.
func (p *jparser) value() *jnode {
	p.ws()
	n := &jnode{start: p.pos}
	switch c := p.src[p.pos]; {
	case c == '{':
		n.kind = jObject
		p.pos++
		p.ws()
		if p.src[p.pos] == '}' {
			p.pos++
			return n
		}
		for {
			p.ws()
			ks := p.pos
			k := p.stringLit()
			p.ws()
			p.pos++ // ':'
			v := p.value()
			n.obj = append(n.obj, jkv{key: k, keyStart: ks, val: v})
			p.ws()
			if p.src[p.pos] == ',' {
				p.pos++
				continue
			}
			p.pos++ // '}'
			return n
		}
	case c == '[':
		n.kind = jArray
		p.pos++
		p.ws()
		if p.src[p.pos] == ']' {
			p.pos++
			return n
		}
		for {
			n.arr = append(n.arr, p.value())
			p.ws()
			if p.src[p.pos] == ',' {
				p.pos++
				continue
			}
			p.pos++ // ']'
			return n
		}
	case c == '"':
		n.kind = jString
		n.str = p.stringLit()
	case c == 't':
		n.kind, n.b = jBool, true
		p.pos += 4
	case c == 'f':
		n.kind = jBool
		p.pos += 5
	case c == 'n':
		n.kind = jNull
		p.pos += 4
	default:
		n.kind = jNumber
		s := p.pos
		for p.pos < len(p.src) && strings.IndexByte("+-0123456789.eE", p.src[p.pos]) >= 0 {
			p.pos++
		}
		n.str = string(p.src[s:p.pos])
	}
	return n
}

func (p *jparser) stringLit() string {
	s := p.pos
	p.pos++
	for {
		c := p.src[p.pos]
		if c == '\\' {
			p.pos += 2
			continue
		}
		p.pos++
		if c == '"' {
			break
		}
	}
	var out string
	_ = json.Unmarshal(p.src[s:p.pos], &out)
	return out
}

// preview renders the value the way ES prints it after "Preview of field's
// value": scalars as text, objects as {k=v, ...}, arrays as [a, b].
func (n *jnode) preview() string {
	switch n.kind {
	case jNull:
		return "null"
	case jBool:
		return strconv.FormatBool(n.b)
	case jNumber, jString:
		return n.str
	case jObject:
		parts := make([]string, len(n.obj))
		for i, kv := range n.obj {
			parts[i] = kv.key + "=" + kv.val.preview()
		}
		return "{" + strings.Join(parts, ", ") + "}"
	case jArray:
		parts := make([]string, len(n.arr))
		for i, v := range n.arr {
			parts[i] = v.preview()
		}
		return "[" + strings.Join(parts, ", ") + "]"
	}
	return ""
}

func (n *jnode) tokenName() string {
	switch n.kind {
	case jNull:
		return "VALUE_NULL"
	case jBool:
		if n.b {
			return "VALUE_TRUE"
		}
		return "VALUE_FALSE"
	case jNumber:
		if strings.ContainsAny(n.str, ".eE") {
			return "VALUE_NUMBER_FLOAT"
		}
		return "VALUE_NUMBER_INT"
	case jString:
		return "VALUE_STRING"
	case jObject:
		return "START_OBJECT"
	case jArray:
		return "START_ARRAY"
	}
	return ""
}

// location returns ES's "line:column" (1-based) for a byte offset.
func location(src []byte, off int) string {
	line, col := 1, 1
	for i := 0; i < off && i < len(src); i++ {
		if src[i] == '\n' {
			line++
			col = 1
		} else {
			col++
		}
	}
	return fmt.Sprintf("%d:%d", line, col)
}

// javaString renders a generic value like Java's Map/List toString, used in
// "unsupported parameters" messages.
func javaString(v any) string {
	switch t := v.(type) {
	case map[string]any:
		keys := make([]string, 0, len(t))
		for k := range t {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		parts := make([]string, len(keys))
		for i, k := range keys {
			parts[i] = k + "=" + javaString(t[k])
		}
		return "{" + strings.Join(parts, ", ") + "}"
	case []any:
		parts := make([]string, len(t))
		for i, e := range t {
			parts[i] = javaString(e)
		}
		return "[" + strings.Join(parts, ", ") + "]"
	case nil:
		return "null"
	default:
		return fmt.Sprint(t)
	}
}
