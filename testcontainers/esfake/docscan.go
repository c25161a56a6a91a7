package esfake

import (
	"math"
	"net/netip"
	"strconv"
)

// docScan is the fast path of document validation. It reads the source
// once, checking it against the index mapping as it goes, without building
// a tree or allocating. It only ever vouches for a document that the full
// parser (parseJSON, then docParser) would accept without adding any
// field to the mapping; for anything else (a field to map dynamically, a
// value to reject, a name or value it does not model, malformed JSON) it
// says no and the caller runs the full parser, so every outcome but plain
// acceptance keeps its single implementation there.
type docScan struct {
	src          []byte
	pos          int
	depth        int
	hasTimestamp bool // a top-level non-null @timestamp, for data streams
}

// The full parser goes deeper than this; such documents take its path.
const scanMaxDepth = 200

// scanDocument reports whether src is a document the index accepts as it
// is, and whether it has a top-level @timestamp.
func scanDocument(ix *index, src []byte) (ok, hasTimestamp bool) {
	sc := docScan{src: src}
	sc.ws()
	if sc.pos >= len(src) || src[sc.pos] != '{' {
		return false, false
	}
	if !sc.object(ix.mapping, orDefault(ix.mapping.Dynamic, "true"), true) {
		return false, false
	}
	sc.ws()
	return sc.pos == len(src), sc.hasTimestamp
}

func (sc *docScan) ws() {
	for sc.pos < len(sc.src) && sc.src[sc.pos] <= ' ' {
		switch sc.src[sc.pos] {
		case ' ', '\t', '\n', '\r':
			sc.pos++
		default:
			return
		}
	}
}

// object reads an object whose fields obj maps, the way walkObject does.
func (sc *docScan) object(obj *fieldMapping, dyn string, root bool) bool {
	if sc.depth++; sc.depth > scanMaxDepth {
		return false
	}
	sc.pos++ // '{'
	sc.ws()
	if sc.pos < len(sc.src) && sc.src[sc.pos] == '}' {
		sc.pos++
		sc.depth--
		return true
	}
	for i := 0; ; i++ {
		sc.ws()
		key, child, ok := sc.key(obj, i)
		if !ok {
			return false
		}
		if root && key[0] == '_' && metadataFields[string(key)] {
			return false
		}
		sc.ws()
		if sc.pos >= len(sc.src) || sc.src[sc.pos] != ':' {
			return false
		}
		sc.pos++
		sc.ws()
		if sc.pos >= len(sc.src) {
			return false
		}
		if root && string(key) == "@timestamp" && sc.src[sc.pos] != 'n' {
			sc.hasTimestamp = true
		}
		if !sc.field(child, dyn) {
			return false
		}
		sc.ws()
		if sc.pos >= len(sc.src) {
			return false
		}
		switch sc.src[sc.pos] {
		case ',':
			sc.pos++
		case '}':
			sc.pos++
			sc.depth--
			return true
		default:
			return false
		}
	}
}

// key reads the i-th key of an object that obj maps, and finds its
// mapping. Documents of one kind list their fields in the same order, so
// obj remembers the names it met at each position (see prop): when the
// name there is the same as last time, it is recognised with one
// comparison, and known to be a plain key, without scanning or hashing.
func (sc *docScan) key(obj *fieldMapping, i int) (key []byte, fm *fieldMapping, ok bool) {
	if i < len(obj.seen) {
		name := obj.seen[i].name
		end := sc.pos + 1 + len(name)
		if end < len(sc.src) && sc.src[sc.pos] == '"' && sc.src[end] == '"' && string(sc.src[sc.pos+1:end]) == name {
			key = sc.src[sc.pos+1 : end]
			sc.pos = end + 1
			return key, obj.seen[i].fm, true
		}
	}
	if key, ok = sc.plainKey(); !ok {
		return nil, nil, false
	}
	return key, obj.prop(i, key), true
}

// plainKey reads an object key made of printable ASCII without escapes,
// dots or blanks: names the full parser takes as they are, with no path
// splitting and no name errors. Any other key makes the scan give up.
func (sc *docScan) plainKey() ([]byte, bool) {
	if sc.pos >= len(sc.src) || sc.src[sc.pos] != '"' {
		return nil, false
	}
	start := sc.pos + 1
	for i := start; i < len(sc.src); i++ {
		c := sc.src[i]
		if plainByte[c] && c != ' ' && c != '.' {
			continue
		}
		if c == '"' && i > start {
			sc.pos = i + 1
			return sc.src[start:i], true
		}
		return nil, false
	}
	return nil, false
}

// plainByte marks the bytes that stand for themselves in a JSON string:
// printable ASCII but the quote and the backslash.
var plainByte = func() (t [256]bool) {
	for c := ' '; c < 0x7f; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// field reads the value of a field mapped by fm (nil when unmapped), the
// way walkValue does.
func (sc *docScan) field(fm *fieldMapping, dyn string) bool {
	switch sc.src[sc.pos] {
	case 'n':
		return sc.literal("null")
	case '[':
		if sc.depth++; sc.depth > scanMaxDepth {
			return false
		}
		sc.pos++
		sc.ws()
		if sc.pos < len(sc.src) && sc.src[sc.pos] == ']' {
			sc.pos++
			sc.depth--
			return true
		}
		for {
			sc.ws()
			if sc.pos >= len(sc.src) || !sc.field(fm, dyn) {
				return false
			}
			sc.ws()
			if sc.pos >= len(sc.src) {
				return false
			}
			switch sc.src[sc.pos] {
			case ',':
				sc.pos++
			case ']':
				sc.pos++
				sc.depth--
				return true
			default:
				return false
			}
		}
	}
	if fm == nil {
		if dyn == "false" || dyn == "runtime" {
			return sc.skip()
		}
		return false // strict rejects it; otherwise it is a field to add
	}
	if fm.isObject() {
		if sc.src[sc.pos] != '{' {
			return false
		}
		if !fm.Enabled {
			return sc.skip()
		}
		return sc.object(fm, orDefault(fm.Dynamic, dyn), false)
	}
	start := sc.pos
	kind := jNull
	var text []byte // the string's content, or the number's literal
	plain := false  // text is the string's value as it is
	switch c := sc.src[sc.pos]; {
	case c == '"':
		kind = jString
		var ok bool
		if text, plain, ok = sc.str(); !ok {
			return false
		}
	case c == 't':
		kind = jBool
		if !sc.literal("true") {
			return false
		}
	case c == 'f':
		kind = jBool
		if !sc.literal("false") {
			return false
		}
	case c == '-' || c >= '0' && c <= '9':
		kind = jNumber
		if !sc.number() {
			return false
		}
		text, plain = sc.src[start:sc.pos], true
	case c == '{':
		kind = jObject
		if !sc.skip() {
			return false
		}
	default:
		return false
	}
	if !valueAccepted(fm, kind, text, plain) {
		return false
	}
	if len(fm.Fields) == 0 {
		return true
	}
	for _, sub := range fm.Fields {
		if !valueAccepted(sub, kind, text, plain) {
			return false
		}
	}
	return true
}

// valueAccepted reports whether checkValue surely finds nothing wrong with
// the value; false also means "not sure".
func valueAccepted(fm *fieldMapping, kind jkind, text []byte, plain bool) bool {
	switch fm.Type {
	case "text", "keyword", "wildcard", "match_only_text", "search_as_you_type",
		"binary", "completion", "counted_keyword", "semantic_text", "version", "token_count":
		return kind != jObject
	case "constant_keyword", "date_nanos":
		return false
	case "long", "integer", "short", "byte", "unsigned_long":
		n, ok := smallInt(text)
		if kind != jNumber || !ok {
			return false
		}
		switch fm.Type {
		case "integer":
			return n >= math.MinInt32 && n <= math.MaxInt32
		case "short":
			return n >= math.MinInt16 && n <= math.MaxInt16
		case "byte":
			return n >= math.MinInt8 && n <= math.MaxInt8
		case "unsigned_long":
			return n >= 0
		}
		return true
	case "double", "float", "half_float", "scaled_float":
		if kind != jNumber {
			return false
		}
		// Without an exponent, the digits before the point bound the
		// value: few enough of them and it is finite for the type, as
		// checkFloat requires. Other literals are parsed.
		digits := intDigits(text)
		switch fm.Type {
		case "float":
			if digits <= 38 {
				return true
			}
		case "half_float":
			if digits <= 4 {
				return true
			}
		default:
			if digits <= 300 {
				return true
			}
		}
		f, err := strconv.ParseFloat(string(text), 64)
		if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
			return false
		}
		switch fm.Type {
		case "float":
			return math.Abs(f) <= math.MaxFloat32
		case "half_float":
			return math.Abs(f) <= 65504
		}
		return true
	case "boolean":
		return kind == jBool
	case "date":
		if kind != jString && kind != jNumber || !plain {
			return false
		}
		if fm.dateFmt.lenient || fm.dateFmt.strictISO && isPlainISODate(text) {
			return true
		}
		_, err := fm.dateFmt.parseDate(string(text))
		return err == nil
	case "ip":
		if kind != jString || !plain {
			return false
		}
		_, err := netip.ParseAddr(string(text))
		return err == nil
	}
	return true // checkValue does not check other types
}

// smallInt reads a JSON integer literal of at most 18 digits, which int64
// holds whatever they are; ok is false for anything else.
func smallInt(text []byte) (n int64, ok bool) {
	digits := text
	if len(digits) > 0 && digits[0] == '-' {
		digits = digits[1:]
	}
	if len(digits) == 0 || len(digits) > 18 {
		return 0, false
	}
	for _, c := range digits {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	if len(digits) < len(text) {
		n = -n
	}
	return n, true
}

// intDigits is the number of digits before the point of a JSON number
// literal, or a large number when it has an exponent.
func intDigits(text []byte) int {
	n, point := 0, false
	for _, c := range text {
		switch {
		case c == 'e' || c == 'E':
			return math.MaxInt
		case c == '.':
			point = true
		case c >= '0' && c <= '9' && !point:
			n++
		}
	}
	return n
}

func (sc *docScan) literal(word string) bool {
	if len(sc.src)-sc.pos < len(word) || string(sc.src[sc.pos:sc.pos+len(word)]) != word {
		return false
	}
	sc.pos += len(word)
	return true
}

// str reads a string as encoding/json would accept it, returning its raw
// content and whether that is also its value (no escapes, printable ASCII
// only); ok is false when it is malformed.
func (sc *docScan) str() (raw []byte, plain, ok bool) {
	if sc.pos >= len(sc.src) || sc.src[sc.pos] != '"' {
		return nil, false, false
	}
	start := sc.pos + 1
	plain = true
	for i := start; i < len(sc.src); i++ {
		c := sc.src[i]
		if plainByte[c] {
			continue
		}
		switch {
		case c == '"':
			sc.pos = i + 1
			return sc.src[start:i:i], plain, true
		case c < ' ':
			return nil, false, false
		case c == '\\':
			plain = false
			i++
			if i >= len(sc.src) {
				return nil, false, false
			}
			switch sc.src[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if i+4 >= len(sc.src) {
					return nil, false, false
				}
				for _, h := range sc.src[i+1 : i+5] {
					if !(h >= '0' && h <= '9' || h >= 'a' && h <= 'f' || h >= 'A' && h <= 'F') {
						return nil, false, false
					}
				}
				i += 4
			default:
				return nil, false, false
			}
		case c >= 0x7f:
			plain = false
		}
	}
	return nil, false, false
}

// number reads a number with JSON's grammar.
func (sc *docScan) number() bool {
	s, i := sc.src, sc.pos
	if i < len(s) && s[i] == '-' {
		i++
	}
	switch {
	case i < len(s) && s[i] == '0':
		i++
	case i < len(s) && s[i] >= '1' && s[i] <= '9':
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
	default:
		return false
	}
	if i < len(s) && s[i] == '.' {
		i++
		d := i
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		if i == d {
			return false
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		d := i
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		if i == d {
			return false
		}
	}
	sc.pos = i
	return true
}

// skip reads any value, only checking its syntax.
func (sc *docScan) skip() bool {
	if sc.pos >= len(sc.src) {
		return false
	}
	switch c := sc.src[sc.pos]; {
	case c == '"':
		_, _, ok := sc.str()
		return ok
	case c == 't':
		return sc.literal("true")
	case c == 'f':
		return sc.literal("false")
	case c == 'n':
		return sc.literal("null")
	case c == '-' || c >= '0' && c <= '9':
		return sc.number()
	case c == '{' || c == '[':
		if sc.depth++; sc.depth > scanMaxDepth {
			return false
		}
		end := byte('}')
		if c == '[' {
			end = ']'
		}
		sc.pos++
		sc.ws()
		if sc.pos < len(sc.src) && sc.src[sc.pos] == end {
			sc.pos++
			sc.depth--
			return true
		}
		for {
			sc.ws()
			if c == '{' {
				if _, _, ok := sc.str(); !ok {
					return false
				}
				sc.ws()
				if sc.pos >= len(sc.src) || sc.src[sc.pos] != ':' {
					return false
				}
				sc.pos++
				sc.ws()
			}
			if !sc.skip() {
				return false
			}
			sc.ws()
			if sc.pos >= len(sc.src) {
				return false
			}
			switch sc.src[sc.pos] {
			case ',':
				sc.pos++
			case end:
				sc.pos++
				sc.depth--
				return true
			default:
				return false
			}
		}
	}
	return false
}
