package enricher

import (
	"fmt"
	"os"
	"os/exec"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
	_ "time/tzdata" // for the UTC+14 child on machines without a zone database

	"github.com/linkedin/goavro/v2"

	"github.com/rendezvous-ml/rendezvous/schemas"
)

func request(received time.Time) map[string]any {
	return map[string]any{
		"request_id":      "r-1",
		"objective":       "iris",
		"key":             "tenant-7",
		"received_us":     received.UnixMicro(),
		"deadline_us":     received.Add(100 * time.Millisecond).UnixMicro(),
		"reply_topic":     "rdv.iris.results",
		"reply_partition": int32(3),
		"features": map[string]any{
			"sepalLength": 5.1, "sepalWidth": 3.5, "petalLength": 1.4, "petalWidth": 0.2,
		},
	}
}

func TestEnrich(t *testing.T) {
	received := time.Date(2024, 1, 7, 23, 59, 30, 0, time.UTC) // a Sunday
	now := received.Add(3 * time.Millisecond)
	row := map[string]any{"segment": "gold", "region": "eu"}
	got, err := Enrich(request(received), row, now)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"request_id":  "r-1",
		"objective":   "iris",
		"key":         "tenant-7",
		"received_us": received.UnixMicro(),
		"deadline_us": received.Add(100 * time.Millisecond).UnixMicro(),
		"enriched_us": now.UnixMicro(),
		"hour_of_day": int32(23),
		"day_of_week": int32(0),
		"context":     map[string]any{"segment": "gold", "region": "eu"},
		"features":    map[string]any{"sepalLength": 5.1, "sepalWidth": 3.5, "petalLength": 1.4, "petalWidth": 0.2},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got  %#v\nwant %#v", got, want)
	}

	// The input is goavro's native form of the objective's input schema.
	set, err := schemas.For("iris")
	if err != nil {
		t.Fatal(err)
	}
	codec, err := goavro.NewCodec(set.Text[schemas.Input])
	if err != nil {
		t.Fatal(err)
	}
	bin, err := codec.BinaryFromNative(nil, got)
	if err != nil {
		t.Fatalf("enriched input does not encode with the input schema: %v", err)
	}
	back, _, err := codec.NativeFromBinary(bin)
	if err != nil || !reflect.DeepEqual(back, want) {
		t.Fatalf("round trip: %v, %v", back, err)
	}
}

// The hour and weekday are UTC's whatever the server's zone: the test runs
// the cases here and again in a child process whose local zone is UTC+14.
func TestEnrichTimeFieldsAreUTC(t *testing.T) {
	const child = "RDV_TEST_ENRICH_TZ_CHILD"
	if os.Getenv(child) != "" {
		if _, off := time.Now().Zone(); off != 14*3600 {
			t.Fatalf("child's local zone is %+ds from UTC, want +14h", off)
		}
	} else {
		cmd := exec.Command(os.Args[0], "-test.run=^TestEnrichTimeFieldsAreUTC$", "-test.count=1")
		cmd.Env = append(os.Environ(), child+"=1", "TZ=Pacific/Kiritimati")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("in UTC+14: %v\n%s", err, out)
		}
	}

	tests := []struct {
		at         time.Time
		hour, wday int32
	}{
		{time.Date(2024, 1, 7, 23, 59, 59, 0, time.UTC), 23, 0},                      // Sunday night
		{time.Date(2024, 1, 8, 0, 0, 0, 0, time.UTC), 0, 1},                          // Monday midnight
		{time.Date(2024, 1, 13, 12, 0, 0, 0, time.FixedZone("EST", -5*3600)), 17, 6}, // Saturday noon in New York
		{time.Date(2024, 1, 1, 9, 30, 0, 0, time.FixedZone("IST", 5*3600+1800)), 4, 1},
		{time.Unix(0, 0), 0, 4}, // the epoch was a Thursday
	}
	for _, tt := range tests {
		got, err := Enrich(request(tt.at), nil, tt.at)
		if err != nil {
			t.Fatal(err)
		}
		if got["hour_of_day"] != tt.hour || got["day_of_week"] != tt.wday {
			t.Errorf("%v: hour %v day %v, want %d and %d", tt.at, got["hour_of_day"], got["day_of_week"], tt.hour, tt.wday)
		}
	}
}

func TestEnrichNeedsRequestID(t *testing.T) {
	for _, id := range []any{nil, "", 42} {
		req := request(time.Now())
		if id == nil {
			delete(req, "request_id")
		} else {
			req["request_id"] = id
		}
		if got, err := Enrich(req, map[string]any{}, time.Now()); err == nil || !strings.Contains(err.Error(), "request_id") {
			t.Errorf("request_id %v: got %v, err %v", id, got, err)
		}
	}
}

func TestEnrichCopiesTheContextRow(t *testing.T) {
	row := map[string]any{"a": "1"}
	got, err := Enrich(request(time.Now()), row, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got["context"], row) {
		t.Fatalf("context %v, want %v", got["context"], row)
	}
	empty, err := Enrich(request(time.Now()), map[string]any{}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if m, ok := empty["context"].(map[string]any); !ok || len(m) != 0 {
		t.Fatalf("empty row gave context %#v", empty["context"])
	}
}

func newTable() *Table { return &Table{rows: map[string]map[string]any{}} }

func TestTableLookup(t *testing.T) {
	tb := newTable()
	if got := tb.Lookup("anyone"); got == nil || len(got) != 0 {
		t.Fatalf("empty table: %#v, want an empty, non-nil map", got)
	}

	tb.put("*", map[string]any{"segment": "default"})
	tb.put("alice", map[string]any{"segment": "gold"})
	if tb.Len() != 2 {
		t.Fatalf("Len = %d", tb.Len())
	}
	if got := tb.Lookup("alice"); got["segment"] != "gold" {
		t.Fatalf("alice: %v", got)
	}
	if got := tb.Lookup("bob"); got["segment"] != "default" {
		t.Fatalf("bob falls back to the default row: %v", got)
	}
	if got := tb.Lookup(""); got["segment"] != "default" {
		t.Fatalf("no key falls back to the default row: %v", got)
	}

	tb.put("alice", map[string]any{"segment": "silver"}) // an update replaces the row
	if got := tb.Lookup("alice"); !reflect.DeepEqual(got, map[string]any{"segment": "silver"}) {
		t.Fatalf("updated alice: %v", got)
	}
	tb.put("alice", map[string]any{}) // an empty row is a row
	if got := tb.Lookup("alice"); len(got) != 0 || tb.Len() != 2 {
		t.Fatalf("alice with an empty row: %v (len %d)", got, tb.Len())
	}

	tb.put("alice", nil) // tombstone
	if tb.Len() != 1 {
		t.Fatalf("Len after tombstone = %d", tb.Len())
	}
	if got := tb.Lookup("alice"); got["segment"] != "default" {
		t.Fatalf("deleted alice: %v, want the default row", got)
	}
	tb.put("*", nil)
	if got := tb.Lookup("alice"); got == nil || len(got) != 0 {
		t.Fatalf("no rows left: %v", got)
	}
	tb.put("ghost", nil) // a tombstone for an unknown key is harmless
	if tb.Len() != 0 {
		t.Fatalf("Len = %d", tb.Len())
	}
}

func TestTableConcurrentUse(t *testing.T) {
	tb := newTable()
	tb.put(DefaultKey, map[string]any{"d": "1"})
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for i := 0; i < 500; i++ {
				k := fmt.Sprintf("k%d", i%20)
				if i%7 == 0 {
					tb.put(k, nil)
				} else {
					tb.put(k, map[string]any{"i": fmt.Sprint(i)})
				}
			}
		}()
		go func() {
			defer wg.Done()
			for i := 0; i < 500; i++ {
				if r := tb.Lookup(fmt.Sprintf("k%d", i%20)); r == nil {
					t.Error("nil row")
					return
				}
			}
		}()
	}
	wg.Wait()
	if tb.Lookup("unknown")["d"] != "1" {
		t.Fatal("default row lost")
	}
}

func TestConfigValidate(t *testing.T) {
	if err := Defaults().Validate(); err != nil {
		t.Fatal(err)
	}
	c := Defaults()
	c.Common.RegistryURL = ""
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "registry:") {
		t.Fatalf("err = %v", err)
	}
}
