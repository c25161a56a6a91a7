package esfake

import (
	"testing"
	"time"
)

func TestDateFormats(t *testing.T) {
	cases := []struct {
		format, value string
		ok            bool
		want          string // RFC3339Nano in UTC, when ok
	}{
		{"", "2024-05-01T10:00:00Z", true, "2024-05-01T10:00:00Z"},
		{"", "2024-05-01T10:00:00.123456789+02:00", true, "2024-05-01T08:00:00.123456789Z"},
		{"", "2024-05-01T10:00:00,5-0130", true, "2024-05-01T11:30:00.5Z"},
		{"", "2024-05-01", true, "2024-05-01T00:00:00Z"},
		{"", "2024-05", true, "2024-05-01T00:00:00Z"},
		{"", "2024", true, "2024-01-01T00:00:00Z"},
		{"", "2024-05-01T10", true, "2024-05-01T10:00:00Z"},
		{"", "1714557600000", true, "2024-05-01T10:00:00Z"},
		{"", "-1000", true, "1969-12-31T23:59:59Z"},
		{"", "2024-05-01 10:00:00", false, ""},
		{"", "2024-5-1", false, ""},
		{"", "2024-02-30", false, ""},
		{"", "2024-05-01T25:00:00Z", false, ""},
		{"", "2024-05-01Z", false, ""},
		{"", "", false, ""},
		{"", "nope", false, ""},
		{"date_optional_time", "2024-5-1T1:2:3Z", true, "2024-05-01T01:02:03Z"},
		{"strict_date", "2024-05-01", true, "2024-05-01T00:00:00Z"},
		{"strict_date", "2024-05-01T00:00:00Z", false, ""},
		{"epoch_second", "1714557600", true, "2024-05-01T10:00:00Z"},
		{"epoch_second", "1714557600.5", true, "2024-05-01T10:00:00.5Z"},
		{"yyyy-MM-dd HH:mm:ss", "2024-05-01 10:00:00", true, "2024-05-01T10:00:00Z"},
		{"yyyy-MM-dd HH:mm:ss", "2024-05-01T10:00:00", false, ""},
		{"yyyy/MM/dd HH:mm:ss Z||yyyy/MM/dd Z", "2024/05/01 10:00:00 +0100", true, "2024-05-01T09:00:00Z"},
		{"dd/MMM/yyyy:HH:mm:ss Z", "01/May/2024:10:00:00 +0000", true, "2024-05-01T10:00:00Z"},
		{"yyyy-MM-dd'T'HH:mm:ss.SSSXXX", "2024-05-01T10:00:00.250Z", true, "2024-05-01T10:00:00.25Z"},
		{"yyyy-MM-dd'T'HH:mm:ss.SSSXXX", "2024-05-01T10:00:00.25Z", false, ""},
		{"yyyy-MM-dd[ HH:mm]", "2024-05-01", true, "2024-05-01T00:00:00Z"},
		{"yyyy-MM-dd[ HH:mm]", "2024-05-01 07:30", true, "2024-05-01T07:30:00Z"},
		{"hh:mm a||strict_date", "07:30 PM", true, "1970-01-01T19:30:00Z"},
		{"basic_date_time_no_millis", "20240501T100000Z", true, "2024-05-01T10:00:00Z"},
		{"strict_date_time", "2024-05-01T10:00:00.000+01:00", true, "2024-05-01T09:00:00Z"},
		{"strict_date_time", "2024-05-01T10:00:00+01:00", false, ""},
	}
	for _, c := range cases {
		df, err := compileDateFormat(c.format)
		if err != nil {
			t.Errorf("compile %q: %v", c.format, err)
			continue
		}
		got, perr := df.parseDate(c.value)
		if (perr == nil) != c.ok {
			t.Errorf("%q with %q: ok=%v (%v), want %v", c.value, c.format, perr == nil, perr, c.ok)
			continue
		}
		if c.ok && got.UTC().Format(time.RFC3339Nano) != c.want {
			t.Errorf("%q with %q = %s, want %s", c.value, c.format, got.UTC().Format(time.RFC3339Nano), c.want)
		}
	}
	for _, bad := range []string{"yyyy-MM-dd bb", "date_optional_tim", "yyyy-MM-dd'T", "yyyy-MM-dd]", "{yyyy}"} {
		if _, err := compileDateFormat(bad); err == nil {
			t.Errorf("compile %q succeeded", bad)
		}
	}
}

func TestGlobAndOverlap(t *testing.T) {
	for _, c := range []struct {
		p, s string
		ok   bool
	}{{"score-log*", "score-log-2024.05.01", true}, {"*log*", "score-log", true}, {"a*b*b", "ab", false},
		{"score-log*", "decoy-log", false}, {"*", "x", true}, {"a*c", "abc", true}, {"a*c", "abcd", false}} {
		if globMatch(c.p, c.s) != c.ok {
			t.Errorf("globMatch(%q,%q) != %v", c.p, c.s, c.ok)
		}
	}
	if !patternOverlap("logs-*", "logs-x-*") || patternOverlap("score-log*", "decoy-log*") || !patternOverlap("a*", "*b") {
		t.Error("patternOverlap")
	}
}
