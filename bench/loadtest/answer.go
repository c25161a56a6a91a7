package loadtest

import (
	"bytes"
	"encoding/json"
)

// answer is one HTTP/1.1 response, parsed in place from the bytes read.
type answer struct {
	status int
	body   []byte // de-chunked if it came in chunks
	size   int    // bytes of the input the response took, interim ones included
	close  bool   // the server closes the connection after it
}

const (
	parseMore = iota // not whole yet
	parseDone
	parseBad

	maxHeader = 64 << 10
	maxAnswer = 16 << 20
)

var crlf = []byte("\r\n")

// parse reads a response from the start of data; eof says the connection
// has ended after data. It understands what a Go net/http server may send:
// Content-Length, chunked bodies, interim 1xx responses, bodies up to the
// end of the connection, and Connection: close.
func (a *answer) parse(data []byte, eof bool) int {
	off := 0
	for {
		end := bytes.Index(data[off:], []byte("\r\n\r\n"))
		if end < 0 {
			if len(data)-off > maxHeader {
				return parseBad
			}
			return parseMore
		}
		head, bodyAt := data[off:off+end], off+end+4
		line, rest, _ := bytes.Cut(head, crlf)
		// "HTTP/1.1 200 OK": the reason phrase may be anything, or nothing.
		if len(line) < 12 || string(line[:7]) != "HTTP/1." || line[8] != ' ' || (len(line) > 12 && line[12] != ' ') {
			return parseBad
		}
		status := 0
		for _, c := range line[9:12] {
			if c < '0' || c > '9' {
				return parseBad
			}
			status = status*10 + int(c-'0')
		}
		http10 := line[7] == '0'
		length, chunked, closing, keepAlive := -1, false, false, false
		for len(rest) > 0 {
			line, rest, _ = bytes.Cut(rest, crlf)
			name, value, ok := bytes.Cut(line, []byte(":"))
			if !ok {
				return parseBad
			}
			value = bytes.Trim(value, " \t")
			switch {
			case bytes.EqualFold(name, []byte("Content-Length")):
				n, ok := decimal(value)
				if !ok || length >= 0 && n != length {
					return parseBad
				}
				length = n
			case bytes.EqualFold(name, []byte("Transfer-Encoding")):
				chunked = hasToken(value, "chunked")
			case bytes.EqualFold(name, []byte("Connection")):
				closing = closing || hasToken(value, "close")
				keepAlive = keepAlive || hasToken(value, "keep-alive")
			}
		}
		if status >= 100 && status < 200 {
			if status == 101 {
				return parseBad // never asked for
			}
			off = bodyAt
			continue
		}
		a.status = status
		a.close = closing || http10 && !keepAlive
		switch {
		case status == 204 || status == 304:
			a.body, a.size = nil, bodyAt
		case chunked:
			return a.chunks(data, bodyAt)
		case length >= 0:
			if length > maxAnswer {
				return parseBad
			}
			if len(data) < bodyAt+length {
				return parseMore
			}
			a.body, a.size = data[bodyAt:bodyAt+length], bodyAt+length
		default:
			// No length: the body runs to the end of the connection.
			if !eof {
				return parseMore
			}
			a.body, a.size, a.close = data[bodyAt:], len(data), true
		}
		return parseDone
	}
}

// chunks reads a chunked body starting at p.
func (a *answer) chunks(data []byte, p int) int {
	var body []byte
	for {
		line, _, ok := bytes.Cut(data[p:], crlf)
		if !ok {
			return parseMore
		}
		p += len(line) + 2
		size, _, _ := bytes.Cut(line, []byte(";")) // extensions mean nothing here
		n, ok := hex(bytes.Trim(size, " \t"))
		if !ok || len(body)+n > maxAnswer {
			return parseBad
		}
		if n == 0 {
			// Trailers, up to an empty line.
			for {
				t, _, ok := bytes.Cut(data[p:], crlf)
				if !ok {
					return parseMore
				}
				p += len(t) + 2
				if len(t) == 0 {
					a.body, a.size = body, p
					return parseDone
				}
			}
		}
		if len(data) < p+n+2 {
			return parseMore
		}
		if string(data[p+n:p+n+2]) != "\r\n" {
			return parseBad
		}
		body = append(body, data[p:p+n]...)
		p += n + 2
	}
}

func decimal(b []byte) (int, bool) {
	if len(b) == 0 || len(b) > 10 {
		return 0, false
	}
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

func hex(b []byte) (int, bool) {
	if len(b) == 0 || len(b) > 8 {
		return 0, false
	}
	n := 0
	for _, c := range b {
		switch {
		case c >= '0' && c <= '9':
			n = n<<4 | int(c-'0')
		case c >= 'a' && c <= 'f':
			n = n<<4 | int(c-'a'+10)
		case c >= 'A' && c <= 'F':
			n = n<<4 | int(c-'A'+10)
		default:
			return 0, false
		}
	}
	return n, true
}

// hasToken says whether a comma-separated header value lists token.
func hasToken(value []byte, token string) bool {
	for len(value) > 0 {
		var t []byte
		t, value, _ = bytes.Cut(value, []byte(","))
		if bytes.EqualFold(bytes.Trim(t, " \t"), []byte(token)) {
			return true
		}
	}
	return false
}

// answerFields reads the two members of a predict answer the report uses,
// messageId and reason, from the top level of the JSON object b, without
// decoding the rest: a pass over 400 bytes instead of encoding/json's
// reflection. It checks the object's structure, not every number.
func answerFields(b []byte) (id, reason []byte, ok bool) {
	i := skipSpace(b, 0)
	if i == len(b) || b[i] != '{' {
		return nil, nil, false
	}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		return nil, nil, skipSpace(b, i+1) == len(b)
	}
	for {
		var key, v []byte
		if key, i, ok = jsonString(b, i); !ok {
			return nil, nil, false
		}
		i = skipSpace(b, i)
		if i == len(b) || b[i] != ':' {
			return nil, nil, false
		}
		i = skipSpace(b, i+1)
		if i < len(b) && b[i] == '"' {
			if v, i, ok = jsonString(b, i); !ok {
				return nil, nil, false
			}
			switch string(key) {
			case "messageId":
				id = v
			case "reason":
				reason = v
			}
		} else if i, ok = skipValue(b, i); !ok {
			return nil, nil, false
		}
		i = skipSpace(b, i)
		switch {
		case i == len(b):
			return nil, nil, false
		case b[i] == '}':
			return id, reason, skipSpace(b, i+1) == len(b)
		case b[i] != ',':
			return nil, nil, false
		}
		i = skipSpace(b, i+1)
	}
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\n' || b[i] == '\r' || b[i] == '\t') {
		i++
	}
	return i
}

// jsonString reads the string starting at b[i] and returns its value and
// the index after it. Escaped strings, rare in an answer, go through
// encoding/json.
func jsonString(b []byte, i int) ([]byte, int, bool) {
	end, escaped, ok := stringEnd(b, i)
	if !ok {
		return nil, 0, false
	}
	if !escaped {
		return b[i+1 : end-1], end, true
	}
	var s string
	if json.Unmarshal(b[i:end], &s) != nil {
		return nil, 0, false
	}
	return []byte(s), end, true
}

// stringEnd finds the end of the string starting at b[i]: the index after
// its closing quote.
func stringEnd(b []byte, i int) (end int, escaped, ok bool) {
	if i >= len(b) || b[i] != '"' {
		return 0, false, false
	}
	for i++; i < len(b); i++ {
		switch c := b[i]; {
		case c == '"':
			return i + 1, escaped, true
		case c == '\\':
			escaped = true
			i++
		case c < 0x20:
			return 0, false, false
		}
	}
	return 0, false, false
}

// skipValue skips the value that is not a string starting at b[i].
func skipValue(b []byte, i int) (int, bool) {
	if i == len(b) {
		return 0, false
	}
	if c := b[i]; c != '{' && c != '[' {
		start := i
		for i < len(b) && bytes.IndexByte([]byte(",}] \t\r\n"), b[i]) < 0 {
			i++
		}
		return i, i > start
	}
	depth := 0
	for i < len(b) {
		switch b[i] {
		case '"':
			end, _, ok := stringEnd(b, i)
			if !ok {
				return 0, false
			}
			i = end
			continue
		case '{', '[':
			depth++
		case '}', ']':
			depth--
			if depth == 0 {
				return i + 1, true
			}
		}
		i++
	}
	return 0, false
}
