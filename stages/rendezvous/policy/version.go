package policy

import (
	"slices"
	"strings"
)

// CompareVersions orders two versions: -1, 0 or +1. A leading "v" is
// ignored. Dot-separated parts compare numerically when both are numbers
// ("10" > "9"), as text otherwise; missing parts count as 0 ("1.2" ==
// "1.2.0"). A pre-release ("1.2.0-rc.1") comes before its release, and
// build metadata ("+build") is ignored, as in semantic versioning. Plain
// numbers ("7" < "12") are the one-part case.
func CompareVersions(a, b string) int {
	a, b = trimVersion(a), trimVersion(b)
	am, apre, aHasPre := strings.Cut(a, "-")
	bm, bpre, bHasPre := strings.Cut(b, "-")
	if c := compareParts(am, bm, true); c != 0 {
		return c
	}
	switch {
	case aHasPre && !bHasPre:
		return -1
	case !aHasPre && bHasPre:
		return 1
	case !aHasPre:
		return 0
	}
	return compareParts(apre, bpre, false)
}

func trimVersion(v string) string {
	if i := strings.IndexByte(v, '+'); i >= 0 {
		v = v[:i]
	}
	if len(v) > 1 && (v[0] == 'v' || v[0] == 'V') && v[1] >= '0' && v[1] <= '9' {
		v = v[1:]
	}
	return v
}

// compareParts compares dot-separated identifiers. With padZero a missing
// part is "0"; otherwise the shorter list comes first when all shared parts
// are equal (semver pre-release rule).
func compareParts(a, b string, padZero bool) int {
	for a != "" || b != "" {
		var pa, pb string
		var hasA, hasB bool
		pa, a, hasA = cutDot(a)
		pb, b, hasB = cutDot(b)
		if !hasA || !hasB {
			if !padZero {
				if !hasA && !hasB {
					return 0
				}
				if !hasA {
					return -1
				}
				return 1
			}
			if !hasA {
				pa = "0"
			}
			if !hasB {
				pb = "0"
			}
		}
		if c := compareIdent(pa, pb); c != 0 {
			return c
		}
	}
	return 0
}

func cutDot(s string) (part, rest string, ok bool) {
	if s == "" {
		return "", "", false
	}
	part, rest, _ = strings.Cut(s, ".")
	return part, rest, true
}

// compareIdent compares numbers numerically (numbers before text), text
// bytewise.
func compareIdent(a, b string) int {
	an, bn := isNumber(a), isNumber(b)
	switch {
	case an && bn:
		a, b = strings.TrimLeft(a, "0"), strings.TrimLeft(b, "0")
		if len(a) != len(b) {
			if len(a) < len(b) {
				return -1
			}
			return 1
		}
		return strings.Compare(a, b)
	case an:
		return -1
	case bn:
		return 1
	}
	return strings.Compare(a, b)
}

func isNumber(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// sortStable sorts idx stably by less.
func sortStable(idx []int, less func(a, b int) bool) {
	slices.SortStableFunc(idx, func(a, b int) int {
		switch {
		case less(a, b):
			return -1
		case less(b, a):
			return 1
		}
		return 0
	})
}
