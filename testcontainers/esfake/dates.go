package esfake

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Date handling modelled on the java.time based formats Elasticsearch 8
// accepts in a "format" mapping parameter: the built-in named formats most
// often used in practice, "||"-separated alternatives, epoch_millis and
// epoch_second, and custom java.time patterns made of the common letters.

const defaultDateFormat = "strict_date_optional_time||epoch_millis"

type dateFormat struct {
	src     string
	parsers []dateParser
	// lenient is true when the format uses pattern letters esfake does not
	// model: values are then accepted without checking.
	lenient bool
	// strictISO is true when one of the alternatives is
	// strict_date_optional_time, so isPlainISODate may vouch for a value.
	strictISO bool
}

type dateParser interface {
	// parse returns the instant, or the furthest index it reached.
	parse(s string) (time.Time, int, bool)
}

// compileDateFormat compiles a mapping "format" value; the error text follows
// ES's "Invalid format: [...]: ..." wording.
func compileDateFormat(src string) (*dateFormat, error) {
	if src == "" {
		src = defaultDateFormat
	}
	df := &dateFormat{src: src}
	for _, part := range strings.Split(src, "||") {
		p, lenient, err := compileOneFormat(part)
		if err != nil {
			return nil, fmt.Errorf("Invalid format: [%s]: %s", src, err.Error())
		}
		if lenient {
			df.lenient = true
		}
		if part == "strict_date_optional_time" || part == "strict_date_optional_time_nanos" {
			df.strictISO = true
		}
		if p != nil {
			df.parsers = append(df.parsers, p)
		}
	}
	return df, nil
}

// parseDate parses v with the format. The error carries ES's cause chain:
// illegal_argument_exception caused by date_time_parse_exception.
func (df *dateFormat) parseDate(v string) (time.Time, *esError) {
	if df.lenient {
		return time.Time{}, nil
	}
	best := 0
	for _, p := range df.parsers {
		t, at, ok := p.parse(v)
		if ok {
			return t, nil
		}
		if at > best {
			best = at
		}
	}
	var cause *esError
	if len(df.parsers) > 1 {
		cause = newErr("date_time_parse_exception", "Failed to parse with all enclosed parsers")
	} else {
		cause = newErr("date_time_parse_exception", "Text '%s' could not be parsed at index %d", v, best)
	}
	return time.Time{}, newErr("illegal_argument_exception",
		"failed to parse date field [%s] with format [%s]", v, df.src).withCause(cause)
}

// isPlainISODate recognises the one shape documents nearly always carry,
// yyyy-MM-ddTHH:mm:ss with an optional fraction and an optional Z, as
// valid for strict_date_optional_time, without the general matcher. It
// never accepts what that matcher rejects; false only means "ask it".
func isPlainISODate(b []byte) bool {
	if len(b) < 19 || b[4] != '-' || b[7] != '-' || b[10] != 'T' || b[13] != ':' || b[16] != ':' {
		return false
	}
	n := func(from, to int) int {
		v := 0
		for _, c := range b[from:to] {
			if c < '0' || c > '9' {
				return -1
			}
			v = v*10 + int(c-'0')
		}
		return v
	}
	year, month, day := n(0, 4), n(5, 7), n(8, 10)
	hour, minute, sec := n(11, 13), n(14, 16), n(17, 19)
	if year < 0 || month < 1 || month > 12 || day < 1 || hour < 0 || hour > 23 ||
		minute < 0 || minute > 59 || sec < 0 || sec > 59 || day > monthDays(year, month) {
		return false
	}
	rest := b[19:]
	if len(rest) > 0 && rest[0] == '.' {
		i := 1
		for i < len(rest) && rest[i] >= '0' && rest[i] <= '9' {
			i++
		}
		if i == 1 || i > 10 {
			return false
		}
		rest = rest[i:]
	}
	return len(rest) == 0 || len(rest) == 1 && rest[0] == 'Z'
}

// monthDays is daysIn for years 0 to 9999, without building a time.
func monthDays(year, month int) int {
	switch month {
	case 2:
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

func compileOneFormat(name string) (dateParser, bool, error) {
	switch name {
	case "epoch_millis":
		return epochParser{millis: true}, false, nil
	case "epoch_second":
		return epochParser{}, false, nil
	}
	if els, ok := namedFormats()[name]; ok {
		return &patternParser{elems: els}, false, nil
	}
	if name == "" {
		return nil, false, fmt.Errorf("empty format")
	}
	els, lenient, err := compileJavaPattern(name)
	if err != nil {
		return nil, false, err
	}
	if lenient {
		return nil, true, nil
	}
	return &patternParser{elems: els}, false, nil
}

// epochParser parses epoch_millis / epoch_second values: an optional minus,
// digits and an optional fraction.
type epochParser struct{ millis bool }

func (e epochParser) parse(s string) (time.Time, int, bool) {
	i := 0
	neg := false
	if strings.HasPrefix(s, "-") {
		neg = true
		i = 1
	}
	start := i
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	if i == start {
		return time.Time{}, i, false
	}
	whole, err := strconv.ParseInt(s[start:i], 10, 64)
	if err != nil {
		return time.Time{}, start, false
	}
	var fracNanos int64
	if i < len(s) && s[i] == '.' {
		i++
		fs := i
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		maxDigits := 9
		if e.millis {
			maxDigits = 6
		}
		n := i - fs
		if n == 0 || n > maxDigits {
			return time.Time{}, i, false
		}
		f, _ := strconv.ParseInt(s[fs:i]+strings.Repeat("0", maxDigits-n), 10, 64)
		fracNanos = f
	}
	if i != len(s) {
		return time.Time{}, i, false
	}
	var t time.Time
	if e.millis {
		if whole > math.MaxInt64/int64(time.Millisecond) {
			return time.Time{}, 0, false
		}
		t = time.UnixMilli(whole).Add(time.Duration(fracNanos))
		if neg {
			t = time.UnixMilli(-whole).Add(-time.Duration(fracNanos))
		}
	} else {
		t = time.Unix(whole, fracNanos)
		if neg {
			t = time.Unix(-whole, -fracNanos)
		}
	}
	return t.UTC(), len(s), true
}

// --- pattern based parsing ---------------------------------------------

type elemKind int

const (
	eLit elemKind = iota
	eNum
	eFrac
	eOffset
	eZoneID
	eText
	eOpt
)

type dateField int

const (
	fYear dateField = iota
	fYear2
	fMonth
	fDay
	fDayOfYear
	fHour
	fHour12
	fMinute
	fSecond
	fNano
)

type textKind int

const (
	tMonthShort textKind = iota
	tMonthLong
	tDayShort
	tDayLong
	tAmPm
)

type offsetStyle struct {
	allowZ   bool // "Z" means UTC
	colon    int  // 0: no colon, 1: colon required, 2: either
	minutes  int  // 0: none, 1: optional, 2: required
	allowIDs bool // zone ids such as Europe/Paris, UTC
}

type elem struct {
	kind     elemKind
	lit      string
	field    dateField
	min, max int
	text     textKind
	off      offsetStyle
	sub      []elem
}

type dstate struct {
	year, month, day, doy    int
	hour, minute, sec, nanos int
	hour12                   bool
	pm                       int // -1 unset, 0 am, 1 pm
	loc                      *time.Location
}

type patternParser struct{ elems []elem }

func (p *patternParser) parse(s string) (time.Time, int, bool) {
	st := dstate{year: 1970, month: 1, day: 1, pm: -1, loc: time.UTC}
	far := 0
	var final dstate
	ok := matchElems(p.elems, s, 0, st, &far, func(pos int, st dstate) bool {
		if pos == len(s) {
			final = st
			return true
		}
		return false
	})
	if !ok {
		return time.Time{}, far, false
	}
	t, ok := final.resolve()
	if !ok {
		return time.Time{}, len(s), false
	}
	return t, len(s), true
}

func (st dstate) resolve() (time.Time, bool) {
	h := st.hour
	if st.hour12 {
		if h < 1 || h > 12 {
			return time.Time{}, false
		}
		if st.pm == 1 && h != 12 {
			h += 12
		} else if st.pm == 0 && h == 12 {
			h = 0
		}
	}
	if st.doy > 0 {
		if st.doy > 366 {
			return time.Time{}, false
		}
		t := time.Date(st.year, 1, 1, 0, 0, 0, 0, time.UTC).AddDate(0, 0, st.doy-1)
		if t.Year() != st.year {
			return time.Time{}, false
		}
		st.month, st.day = int(t.Month()), t.Day()
	}
	if st.month < 1 || st.month > 12 || st.day < 1 || h > 23 || st.minute > 59 || st.sec > 59 {
		return time.Time{}, false
	}
	if st.day > daysIn(st.year, time.Month(st.month)) {
		return time.Time{}, false
	}
	return time.Date(st.year, time.Month(st.month), st.day, h, st.minute, st.sec, st.nanos, st.loc), true
}

func daysIn(year int, m time.Month) int {
	return time.Date(year, m+1, 0, 0, 0, 0, 0, time.UTC).Day()
}

func matchElems(es []elem, s string, pos int, st dstate, far *int, cont func(int, dstate) bool) bool {
	if pos > *far {
		*far = pos
	}
	if len(es) == 0 {
		return cont(pos, st)
	}
	e := es[0]
	if e.kind == eOpt {
		if matchElems(e.sub, s, pos, st, far, func(p int, st2 dstate) bool {
			return matchElems(es[1:], s, p, st2, far, cont)
		}) {
			return true
		}
		return matchElems(es[1:], s, pos, st, far, cont)
	}
	p, st2, ok := e.match(s, pos, st)
	if !ok {
		return false
	}
	return matchElems(es[1:], s, p, st2, far, cont)
}

var (
	monthsShort = []string{"Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"}
	monthsLong  = []string{"January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"}
	daysShort   = []string{"Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"}
	daysLong    = []string{"Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"}
)

func (e elem) match(s string, pos int, st dstate) (int, dstate, bool) {
	switch e.kind {
	case eLit:
		if strings.HasPrefix(s[pos:], e.lit) {
			return pos + len(e.lit), st, true
		}
		return pos, st, false
	case eNum:
		i := pos
		for i < len(s) && i-pos < e.max && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		if i-pos < e.min {
			return pos, st, false
		}
		v, _ := strconv.Atoi(s[pos:i])
		switch e.field {
		case fYear:
			st.year = v
		case fYear2:
			st.year = 2000 + v
		case fMonth:
			st.month = v
		case fDay:
			st.day = v
		case fDayOfYear:
			st.doy = v
		case fHour:
			st.hour = v
		case fHour12:
			st.hour, st.hour12 = v, true
		case fMinute:
			st.minute = v
		case fSecond:
			st.sec = v
		case fNano:
			st.nanos = v
		}
		return i, st, true
	case eFrac:
		i := pos
		for i < len(s) && i-pos < e.max && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		n := i - pos
		if n < e.min {
			return pos, st, false
		}
		v, _ := strconv.Atoi(s[pos:i] + strings.Repeat("0", 9-n))
		st.nanos = v
		return i, st, true
	case eText:
		var names []string
		switch e.text {
		case tMonthShort:
			names = monthsShort
		case tMonthLong:
			names = monthsLong
		case tDayShort:
			names = daysShort
		case tDayLong:
			names = daysLong
		case tAmPm:
			names = []string{"AM", "PM"}
		}
		for i, n := range names {
			if len(s)-pos >= len(n) && strings.EqualFold(s[pos:pos+len(n)], n) {
				switch e.text {
				case tMonthShort, tMonthLong:
					st.month = i + 1
				case tAmPm:
					st.pm = i
				}
				return pos + len(n), st, true
			}
		}
		return pos, st, false
	case eOffset:
		return matchOffset(e.off, s, pos, st)
	case eZoneID:
		i := pos
		for i < len(s) && (isAlnum(s[i]) || s[i] == '/' || s[i] == '_' || s[i] == '+' || s[i] == '-') {
			i++
		}
		if i == pos {
			return pos, st, false
		}
		loc, err := loadZone(s[pos:i])
		if err != nil {
			return pos, st, false
		}
		st.loc = loc
		return i, st, true
	}
	return pos, st, false
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

func loadZone(name string) (*time.Location, error) {
	switch name {
	case "Z", "UTC", "GMT", "UT":
		return time.UTC, nil
	}
	if !strings.Contains(name, "/") {
		return nil, fmt.Errorf("unknown zone")
	}
	return time.LoadLocation(name)
}

func matchOffset(o offsetStyle, s string, pos int, st dstate) (int, dstate, bool) {
	rest := s[pos:]
	if o.allowZ && strings.HasPrefix(rest, "Z") {
		st.loc = time.UTC
		return pos + 1, st, true
	}
	if len(rest) > 0 && (rest[0] == '+' || rest[0] == '-') {
		sign := 1
		if rest[0] == '-' {
			sign = -1
		}
		i := 1
		if len(rest) < 3 || !isDigits(rest[1:3]) {
			return pos, st, false
		}
		hh, _ := strconv.Atoi(rest[1:3])
		i = 3
		mm := 0
		switch {
		case o.minutes > 0 && o.colon != 0 && len(rest) >= i+3 && rest[i] == ':' && isDigits(rest[i+1:i+3]):
			mm, _ = strconv.Atoi(rest[i+1 : i+3])
			i += 3
		case o.minutes > 0 && o.colon != 1 && len(rest) >= i+2 && isDigits(rest[i:i+2]):
			mm, _ = strconv.Atoi(rest[i : i+2])
			i += 2
		case o.minutes == 2:
			return pos, st, false
		}
		if hh > 18 || mm > 59 {
			return pos, st, false
		}
		st.loc = time.FixedZone("", sign*(hh*3600+mm*60))
		return pos + i, st, true
	}
	if o.allowIDs {
		return elem{kind: eZoneID}.match(s, pos, st)
	}
	return pos, st, false
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// --- building blocks for the named formats --------------------------------

func lit(s string) elem                  { return elem{kind: eLit, lit: s} }
func num(f dateField, min, max int) elem { return elem{kind: eNum, field: f, min: min, max: max} }
func frac(min, max int) elem             { return elem{kind: eFrac, min: min, max: max} }
func opt(sub ...elem) elem               { return elem{kind: eOpt, sub: sub} }
func seq(parts ...[]elem) []elem {
	var out []elem
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

var isoZone = elem{kind: eOffset, off: offsetStyle{allowZ: true, colon: 2, minutes: 1, allowIDs: true}}

var namedFormatsCache map[string][]elem

func namedFormats() map[string][]elem {
	if namedFormatsCache != nil {
		return namedFormatsCache
	}
	strictY, strictM, strictD := num(fYear, 4, 4), num(fMonth, 2, 2), num(fDay, 2, 2)
	lenY, lenM, lenD := num(fYear, 1, 9), num(fMonth, 1, 2), num(fDay, 1, 2)
	fraction := []elem{opt(lit("."), frac(1, 9)), opt(lit(","), frac(1, 9))}

	optionalTime := func(strict bool) []elem {
		w := 2
		if !strict {
			w = 1
		}
		h, m, s := num(fHour, w, 2), num(fMinute, w, 2), num(fSecond, w, 2)
		return []elem{opt(lit("T"),
			opt(h, opt(lit(":"), m, opt(append([]elem{lit(":"), s}, fraction...)...))),
			opt(isoZone))}
	}
	sdot := seq([]elem{strictY, opt(lit("-"), strictM, opt(lit("-"), strictD))}, optionalTime(true))
	dot := seq([]elem{lenY, opt(lit("-"), lenM, opt(lit("-"), lenD))}, optionalTime(false))

	strictDate := []elem{strictY, lit("-"), strictM, lit("-"), strictD}
	lenDate := []elem{lenY, lit("-"), lenM, lit("-"), lenD}
	hms := func(strict bool) []elem {
		w := 2
		if !strict {
			w = 1
		}
		return []elem{num(fHour, w, 2), lit(":"), num(fMinute, w, 2), lit(":"), num(fSecond, w, 2)}
	}
	zoneReq := elem{kind: eOffset, off: offsetStyle{allowZ: true, colon: 2, minutes: 1, allowIDs: true}}
	m := map[string][]elem{
		"strict_date_optional_time":       sdot,
		"strict_date_optional_time_nanos": sdot,
		"date_optional_time":              dot,
		"iso8601":                         dot,
		"strict_date":                     strictDate,
		"strict_year_month_day":           strictDate,
		"date":                            lenDate,
		"year_month_day":                  lenDate,
		"strict_year_month":               {strictY, lit("-"), strictM},
		"year_month":                      {lenY, lit("-"), lenM},
		"strict_year":                     {strictY},
		"year":                            {lenY},
		"strict_date_time":                seq(strictDate, []elem{lit("T")}, hms(true), []elem{lit("."), frac(3, 9), zoneReq}),
		"date_time":                       seq(lenDate, []elem{lit("T")}, hms(false), []elem{lit("."), frac(1, 9), zoneReq}),
		"strict_date_time_no_millis":      seq(strictDate, []elem{lit("T")}, hms(true), []elem{zoneReq}),
		"date_time_no_millis":             seq(lenDate, []elem{lit("T")}, hms(false), []elem{zoneReq}),
		"strict_date_hour_minute_second":  seq(strictDate, []elem{lit("T")}, hms(true)),
		"date_hour_minute_second":         seq(lenDate, []elem{lit("T")}, hms(false)),
		"strict_date_hour_minute_second_millis": seq(strictDate, []elem{lit("T")}, hms(true),
			[]elem{lit("."), frac(3, 3)}),
		"date_hour_minute_second_millis": seq(lenDate, []elem{lit("T")}, hms(false), []elem{lit("."), frac(1, 3)}),
		"strict_date_hour_minute_second_fraction": seq(strictDate, []elem{lit("T")}, hms(true),
			[]elem{lit("."), frac(1, 9)}),
		"date_hour_minute_second_fraction": seq(lenDate, []elem{lit("T")}, hms(false), []elem{lit("."), frac(1, 9)}),
		"strict_hour_minute_second":        hms(true),
		"hour_minute_second":               hms(false),
		"basic_date":                       {num(fYear, 4, 4), num(fMonth, 2, 2), num(fDay, 2, 2)},
		"basic_date_time": {num(fYear, 4, 4), num(fMonth, 2, 2), num(fDay, 2, 2), lit("T"),
			num(fHour, 2, 2), num(fMinute, 2, 2), num(fSecond, 2, 2), lit("."), frac(3, 9),
			{kind: eOffset, off: offsetStyle{allowZ: true, colon: 2, minutes: 2}}},
		"basic_date_time_no_millis": {num(fYear, 4, 4), num(fMonth, 2, 2), num(fDay, 2, 2), lit("T"),
			num(fHour, 2, 2), num(fMinute, 2, 2), num(fSecond, 2, 2),
			{kind: eOffset, off: offsetStyle{allowZ: true, colon: 2, minutes: 2}}},
	}
	namedFormatsCache = m
	return m
}

func init() { namedFormats() }

// compileJavaPattern compiles a java.time DateTimeFormatter pattern. It
// returns lenient=true for valid letters esfake does not model.
func compileJavaPattern(p string) ([]elem, bool, error) {
	var stack [][]elem
	cur := []elem{}
	lenient := false
	for i := 0; i < len(p); {
		c := p[i]
		switch {
		case c == '\'':
			j := i + 1
			var sb strings.Builder
			for {
				if j >= len(p) {
					return nil, false, fmt.Errorf("Pattern ends with an incomplete string literal: %s", p)
				}
				if p[j] == '\'' {
					if j+1 < len(p) && p[j+1] == '\'' {
						sb.WriteByte('\'')
						j += 2
						continue
					}
					break
				}
				sb.WriteByte(p[j])
				j++
			}
			if sb.Len() == 0 && j == i+1 {
				sb.WriteByte('\'')
			}
			cur = append(cur, lit(sb.String()))
			i = j + 1
		case c == '[':
			stack = append(stack, cur)
			cur = []elem{}
			i++
		case c == ']':
			if len(stack) == 0 {
				return nil, false, fmt.Errorf("Pattern invalid as it contains ] without previous [")
			}
			o := opt(cur...)
			cur = append(stack[len(stack)-1], o)
			stack = stack[:len(stack)-1]
			i++
		case c == '{' || c == '}' || c == '#':
			return nil, false, fmt.Errorf("Pattern includes reserved character: '%c'", c)
		case c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z':
			n := 1
			for i+n < len(p) && p[i+n] == c {
				n++
			}
			e, ok, err := javaLetter(c, n)
			if err != nil {
				return nil, false, err
			}
			if !ok {
				lenient = true
			} else {
				cur = append(cur, e)
			}
			i += n
		default:
			cur = append(cur, lit(string(c)))
			i++
		}
	}
	for len(stack) > 0 {
		o := opt(cur...)
		cur = append(stack[len(stack)-1], o)
		stack = stack[:len(stack)-1]
	}
	return cur, lenient, nil
}

func javaLetter(c byte, n int) (elem, bool, error) {
	width := func(f dateField) elem {
		if n == 1 {
			return num(f, 1, 2)
		}
		return num(f, n, n)
	}
	switch c {
	case 'y', 'u', 'Y':
		switch n {
		case 2:
			return num(fYear2, 2, 2), true, nil
		case 4:
			return num(fYear, 4, 4), true, nil
		default:
			return num(fYear, 1, 9), true, nil
		}
	case 'M', 'L':
		switch n {
		case 3:
			return elem{kind: eText, text: tMonthShort}, true, nil
		case 4:
			return elem{kind: eText, text: tMonthLong}, true, nil
		case 1, 2:
			return width(fMonth), true, nil
		}
		return elem{}, false, fmt.Errorf("Too many pattern letters: %c", c)
	case 'd':
		if n > 2 {
			return elem{}, false, fmt.Errorf("Too many pattern letters: d")
		}
		return width(fDay), true, nil
	case 'D':
		return num(fDayOfYear, n, 3), true, nil
	case 'H', 'k':
		return width(fHour), true, nil
	case 'h', 'K':
		return width(fHour12), true, nil
	case 'm':
		return width(fMinute), true, nil
	case 's':
		return width(fSecond), true, nil
	case 'S':
		return frac(n, n), true, nil
	case 'n':
		return num(fNano, 1, 9), true, nil
	case 'a':
		return elem{kind: eText, text: tAmPm}, true, nil
	case 'E':
		if n >= 4 {
			return elem{kind: eText, text: tDayLong}, true, nil
		}
		return elem{kind: eText, text: tDayShort}, true, nil
	case 'X':
		return elem{kind: eOffset, off: offsetStyle{allowZ: true, colon: colonFor(n), minutes: minutesFor(n)}}, true, nil
	case 'x':
		return elem{kind: eOffset, off: offsetStyle{colon: colonFor(n), minutes: minutesFor(n)}}, true, nil
	case 'Z':
		if n == 5 {
			return elem{kind: eOffset, off: offsetStyle{allowZ: true, colon: 1, minutes: 2}}, true, nil
		}
		return elem{kind: eOffset, off: offsetStyle{colon: 0, minutes: 2}}, true, nil
	case 'V', 'z', 'O':
		return elem{kind: eZoneID}, true, nil
	case 'G', 'Q', 'q', 'w', 'W', 'e', 'c', 'F', 'A', 'N', 'g', 'B':
		return elem{}, false, nil // valid java.time letters that esfake does not check
	}
	return elem{}, false, fmt.Errorf("Unknown pattern letter: %c", c)
}

func colonFor(n int) int {
	if n == 3 || n == 5 {
		return 1
	}
	return 0
}

func minutesFor(n int) int {
	if n == 1 {
		return 1
	}
	return 2
}
