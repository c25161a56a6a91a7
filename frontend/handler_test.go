package frontend

import (
	"encoding/json"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/linkedin/goavro/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/rendezvous-ml/rendezvous/schemas"
)

func irisFields(t *testing.T) []schemas.Field {
	t.Helper()
	set, err := schemas.For("iris")
	if err != nil {
		t.Fatal(err)
	}
	fields, err := set.Features()
	if err != nil {
		t.Fatal(err)
	}
	return fields
}

const irisBody = `{"sepalLength": 5.1, "sepalWidth": 3.5, "petalLength": 1.4, "petalWidth": 0.2}`

func parse(t *testing.T, body string, fields []schemas.Field) (map[string]any, int, error) {
	t.Helper()
	return parseFeatures(strings.NewReader(body), fields, 1<<20)
}

func TestParseFeaturesIris(t *testing.T) {
	got, status, err := parse(t, irisBody, irisFields(t))
	if err != nil || status != 0 {
		t.Fatalf("status %d, err %v", status, err)
	}
	want := map[string]any{"sepalLength": 5.1, "sepalWidth": 3.5, "petalLength": 1.4, "petalWidth": 0.2}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %#v, want %#v", got, want)
	}

	// The result is goavro's native form of the request's features record.
	set, _ := schemas.For("iris")
	codec, err := goavro.NewCodec(set.Text[schemas.Request])
	if err != nil {
		t.Fatal(err)
	}
	req := map[string]any{
		"request_id": "r", "objective": "iris", "key": "", "received_us": int64(1), "deadline_us": int64(2),
		"reply_topic": "t", "reply_partition": int32(0), "features": got,
	}
	if _, err := codec.BinaryFromNative(nil, req); err != nil {
		t.Fatalf("parsed features do not encode: %v", err)
	}
}

func TestParseFeaturesRejects(t *testing.T) {
	fields := irisFields(t)
	tests := []struct {
		name   string
		body   string
		status int
		want   []string // each in the error message
	}{
		{"malformed JSON", `{"sepalLength": 5.1,`, 400, []string{"malformed JSON"}},
		{"not JSON", `sepalLength=5.1`, 400, []string{"malformed JSON"}},
		{"empty body", ``, 400, []string{"request body is empty"}},
		{"blank body", " \n\t", 400, []string{"request body is empty"}},
		{"array body", `[5.1, 3.5, 1.4, 0.2]`, 400, []string{"must be a JSON object", "got a JSON array"}},
		{"string body", `"hello"`, 400, []string{"must be a JSON object", "got a JSON string"}},
		{"number body", `42`, 400, []string{"must be a JSON object", "got a JSON number"}},
		{"null body", `null`, 400, []string{"must be a JSON object", "got null"}},
		{"missing field", `{"sepalLength": 5.1, "sepalWidth": 3.5, "petalLength": 1.4}`, 400,
			[]string{`missing field "petalWidth" (double)`}},
		{"null field without default", `{"sepalLength": null, "sepalWidth": 3.5, "petalLength": 1.4, "petalWidth": 0.2}`, 400,
			[]string{`missing field "sepalLength"`}},
		{"string for a double", `{"sepalLength": "5.1", "sepalWidth": 3.5, "petalLength": 1.4, "petalWidth": 0.2}`, 400,
			[]string{`field "sepalLength" must be a number (double)`, `got the string "5.1"`}},
		{"boolean for a double", `{"sepalLength": 5.1, "sepalWidth": true, "petalLength": 1.4, "petalWidth": 0.2}`, 400,
			[]string{`field "sepalWidth" must be a number (double), got a boolean`}},
		{"object for a double", `{"sepalLength": 5.1, "sepalWidth": 3.5, "petalLength": {"cm": 1.4}, "petalWidth": 0.2}`, 400,
			[]string{`field "petalLength"`, "got an object"}},
		{"array for a double", `{"sepalLength": 5.1, "sepalWidth": 3.5, "petalLength": 1.4, "petalWidth": [0.2]}`, 400,
			[]string{`field "petalWidth"`, "got an array"}},
		{"double out of range", `{"sepalLength": 1e400, "sepalWidth": 3.5, "petalLength": 1.4, "petalWidth": 0.2}`, 400,
			[]string{`field "sepalLength": 1e400 is out of range for double`}},
		{"unknown field", `{"sepalLength": 5.1, "sepalWidth": 3.5, "petalLength": 1.4, "petalWidth": 0.2, "color": "blue"}`, 400,
			[]string{`unknown field "color"`, "the fields are sepalLength, sepalWidth, petalLength, petalWidth"}},
		{"first of several unknown fields", `{"sepalLength": 5.1, "sepalWidth": 3.5, "petalLength": 1.4, "petalWidth": 0.2, "zeta": 1, "alpha": 2}`, 400,
			[]string{`unknown field "alpha"`}},
		{"misspelt field", `{"sepal_length": 5.1, "sepalWidth": 3.5, "petalLength": 1.4, "petalWidth": 0.2}`, 400,
			[]string{`missing field "sepalLength"`}},
		{"two JSON values", irisBody + irisBody, 400, []string{"more than one value"}},
		{"two values on two lines", irisBody + "\n" + irisBody, 400, []string{"more than one value"}},
		{"trailing garbage", irisBody + " x", 400, []string{"more than one value"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, status, err := parse(t, tt.body, fields)
			if err == nil {
				t.Fatalf("accepted, got %v", got)
			}
			if status != tt.status {
				t.Errorf("status %d, want %d", status, tt.status)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}

// A body is one JSON object: a stray closing bracket after it is malformed
// JSON like any other trailing text.
func TestParseFeaturesRejectsTrailingBracket(t *testing.T) {
	for _, body := range []string{irisBody + "]", irisBody + "}", irisBody + "}]"} {
		if _, _, err := parse(t, body, irisFields(t)); err == nil {
			t.Errorf("accepted %q", body)
		}
	}
}

func TestParseFeaturesTypes(t *testing.T) {
	fields := []schemas.Field{
		{Name: "i", Type: "int"},
		{Name: "l", Type: "long"},
		{Name: "f", Type: "float"},
		{Name: "d", Type: "double"},
		{Name: "s", Type: "string"},
		{Name: "b", Type: "boolean"},
	}
	body := `{"i": -7, "l": 9007199254740993, "f": 0.5, "d": 2, "s": "x y", "b": false}`
	got, _, err := parse(t, body, fields)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"i": int32(-7), "l": int64(9007199254740993), "f": float32(0.5), "d": float64(2), "s": "x y", "b": false}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got  %#v\nwant %#v", got, want)
	}

	valid := map[string]string{"i": "1", "l": "1", "f": "1", "d": "1", "s": `"s"`, "b": "true"}
	bad := []struct {
		field, value, want string
	}{
		{"i", "1.5", `field "i" must be an integer (int), got 1.5`},
		{"i", "1e3", `field "i" must be an integer (int)`},
		{"i", "2147483648", `field "i": 2147483648 is out of range for int`},
		{"i", "-2147483649", `out of range for int`},
		{"l", "9223372036854775808", `field "l" must be an integer (long)`},
		{"l", `"12"`, `field "l" must be a number (long), got the string "12"`},
		{"f", "true", `field "f" must be a number (float), got a boolean`},
		{"s", "12", `field "s" must be a string, got a number`},
		{"s", "{}", `field "s" must be a string, got an object`},
		{"b", `"true"`, `field "b" must be true or false, got the string "true"`},
		{"b", "1", `field "b" must be true or false, got a number`},
	}
	for _, tt := range bad {
		vals := map[string]string{}
		for k, v := range valid {
			vals[k] = v
		}
		vals[tt.field] = tt.value
		var parts []string
		for _, f := range fields {
			parts = append(parts, `"`+f.Name+`": `+vals[f.Name])
		}
		body := "{" + strings.Join(parts, ", ") + "}"
		_, status, err := parse(t, body, fields)
		if err == nil || status != http.StatusBadRequest || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s=%s: status %d err %v, want 400 saying %q", tt.field, tt.value, status, err, tt.want)
		}
	}

	if int32(math.MaxInt32) != mustParse(t, `{"i": 2147483647}`, fields[:1])["i"] {
		t.Error("MaxInt32 is an int")
	}
}

func mustParse(t *testing.T, body string, fields []schemas.Field) map[string]any {
	t.Helper()
	got, _, err := parse(t, body, fields)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// float32 cannot hold 1e39: the value must be rejected, not become +Inf.
func TestParseFeaturesFloatOutOfRange(t *testing.T) {
	_, status, err := parse(t, `{"f": 1e39}`, []schemas.Field{{Name: "f", Type: "float"}})
	if err == nil || status != http.StatusBadRequest {
		t.Fatalf("status %d err %v, want 400", status, err)
	}
}

func TestParseFeaturesUnsupportedType(t *testing.T) {
	_, status, err := parse(t, `{"x": 1}`, []schemas.Field{{Name: "x", Type: "bytes"}})
	if err == nil || status != http.StatusBadRequest || !strings.Contains(err.Error(), `field "x" has unsupported type bytes`) {
		t.Fatalf("status %d err %v", status, err)
	}
}

func TestParseFeaturesDefaults(t *testing.T) {
	// Defaults as schemas.Features decodes them from JSON: numbers are
	// float64.
	fields := []schemas.Field{
		{Name: "need", Type: "double"},
		{Name: "d", Type: "double", Default: 0.5, HasDef: true},
		{Name: "f", Type: "float", Default: 1.5, HasDef: true},
		{Name: "i", Type: "int", Default: float64(3), HasDef: true},
		{Name: "l", Type: "long", Default: float64(4), HasDef: true},
		{Name: "s", Type: "string", Default: "none", HasDef: true},
		{Name: "b", Type: "boolean", Default: true, HasDef: true},
	}
	want := map[string]any{"need": 1.0, "d": 0.5, "f": float32(1.5), "i": int32(3), "l": int64(4), "s": "none", "b": true}
	for _, body := range []string{
		`{"need": 1}`,
		`{"need": 1, "d": null, "f": null, "i": null, "l": null, "s": null, "b": null}`, // null means "use the default"
	} {
		got, _, err := parse(t, body, fields)
		if err != nil {
			t.Fatalf("%s: %v", body, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%s:\ngot  %#v\nwant %#v", body, got, want)
		}
	}
	got := mustParse(t, `{"need": 1, "i": 9, "s": "given"}`, fields)
	if got["i"] != int32(9) || got["s"] != "given" {
		t.Fatalf("given values lost to defaults: %v", got)
	}
	if _, _, err := parse(t, `{"d": 1}`, fields); err == nil || !strings.Contains(err.Error(), `missing field "need" (double)`) {
		t.Fatalf("err = %v", err)
	}
}

func TestParseFeaturesFromSchemaDefaults(t *testing.T) {
	// A request schema whose features have defaults, read with
	// schemas.Features as the frontend does, accepts a body without them.
	set := schemas.Set{Objective: "x", Text: map[schemas.Kind]string{schemas.Request: `{"type":"record","name":"R","fields":[
		{"name":"features","type":{"type":"record","name":"F","fields":[
			{"name":"a","type":"double"},
			{"name":"n","type":"int","default":2},
			{"name":"c","type":"string","default":"eu"}]}}]}`}}
	fields, err := set.Features()
	if err != nil {
		t.Fatal(err)
	}
	got := mustParse(t, `{"a": 0.1}`, fields)
	if want := map[string]any{"a": 0.1, "n": int32(2), "c": "eu"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("got %#v, want %#v", got, want)
	}
}

func TestParseFeaturesBodyOverLimit(t *testing.T) {
	const limit = 64
	body := `{"sepalLength": 5.1, "sepalWidth": 3.5, "petalLength": 1.4, "petalWidth": 0.2, "pad": "` + strings.Repeat("x", 100) + `"}`
	rec := httptest.NewRecorder()
	r := http.MaxBytesReader(rec, io.NopCloser(strings.NewReader(body)), limit)
	_, status, err := parseFeatures(r, irisFields(t), limit)
	if status != http.StatusRequestEntityTooLarge || err == nil || !strings.Contains(err.Error(), "over the 64-byte limit") {
		t.Fatalf("status %d err %v, want 413 naming the limit", status, err)
	}

	// Exactly at the limit is fine.
	exact := irisBody
	rec = httptest.NewRecorder()
	r = http.MaxBytesReader(rec, io.NopCloser(strings.NewReader(exact)), int64(len(exact)))
	if _, status, err := parseFeatures(r, irisFields(t), int64(len(exact))); err != nil {
		t.Fatalf("a body of exactly the limit: status %d err %v", status, err)
	}
}

var uuidV4 = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func TestNewID(t *testing.T) {
	seen := make(map[string]bool, 5000)
	for i := 0; i < 5000; i++ {
		id := newID()
		if !uuidV4.MatchString(id) {
			t.Fatalf("%q is not an RFC 4122 version-4 UUID", id)
		}
		if seen[id] {
			t.Fatalf("id %q repeated after %d ids", id, i)
		}
		seen[id] = true
	}
}

// testServer is a frontend without Kafka: enough for the routes and for
// every answer given before a request is produced.
func testServer(maxBody int64) *Server {
	s := &Server{
		cfg:        Config{Objectives: []string{"iris"}, MaxBody: maxBody},
		objectives: map[string]*objective{},
		pending:    map[string]chan answer{},
		calls:      prometheus.NewCounterVec(prometheus.CounterOpts{Name: "calls"}, []string{"objective", "code", "reason"}),
	}
	return s
}

func call(t *testing.T, h http.Handler, method, path, body string) (int, ErrorBody) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, path, strings.NewReader(body)))
	var eb ErrorBody
	if rec.Code != http.StatusOK {
		if err := json.Unmarshal(rec.Body.Bytes(), &eb); err != nil {
			t.Fatalf("%s %s: %d with a non-JSON body %q", method, path, rec.Code, rec.Body)
		}
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("%s %s: Content-Type %q", method, path, ct)
	}
	return rec.Code, eb
}

func TestHandlerRoutesAndValidation(t *testing.T) {
	s := testServer(128)
	s.objectives["iris"] = &objective{name: "iris", features: irisFields(t)}
	h := s.Handler()

	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/ping", nil))
	if rec.Code != http.StatusOK || strings.TrimSpace(rec.Body.String()) != `{"ping":"pong"}` {
		t.Fatalf("/ping = %d %s", rec.Code, rec.Body)
	}

	tests := []struct {
		method, path, body string
		code               int
		want               string
	}{
		{"GET", "/predict", "", 404, "no route for GET /predict"},
		{"GET", "/nowhere", "", 404, "use POST /predict"},
		{"POST", "/v1/objectives/fraud/predict", irisBody, 404, `unknown objective "fraud": this frontend serves iris`},
		{"POST", "/predict", `{"sepalLength": 5.1}`, 400, `missing field "sepalWidth"`},
		{"POST", "/v1/objectives/iris/predict", `[1]`, 400, "got a JSON array"},
		{"POST", "/predict", `{"pad": "` + strings.Repeat("x", 200) + `"}`, 413, "over the 128-byte limit"},
	}
	for _, tt := range tests {
		code, eb := call(t, h, tt.method, tt.path, tt.body)
		if code != tt.code || !strings.Contains(eb.Error, tt.want) {
			t.Errorf("%s %s: %d %q, want %d saying %q", tt.method, tt.path, code, eb.Error, tt.code, tt.want)
		}
		if eb.MessageID != "" {
			t.Errorf("%s %s: a rejected call has message id %q", tt.method, tt.path, eb.MessageID)
		}
	}
}

func TestResponse(t *testing.T) {
	s := testServer(1)
	start := time.Now().Add(-5 * time.Millisecond)
	features := map[string]any{"sepalLength": 5.1}
	rec := map[string]any{
		"model": "dt", "version": "1", "reason": "champion", "policy": "priority",
		"result":        map[string]any{"string": "setosa"},
		"probabilities": map[string]any{"setosa": 0.9, "virginica": 0.1},
	}
	r := s.response("id-1", "iris", features, rec, start)
	if r.MessageID != "id-1" || r.Objective != "iris" || r.Reason != "champion" || r.Policy != "priority" ||
		r.ModelResult.ModelName != "dt" || r.ModelResult.ModelVersion != "1" || r.ModelResult.Result != "setosa" {
		t.Fatalf("response %+v", r)
	}
	if !reflect.DeepEqual(r.ModelResult.Probabilities, map[string]float64{"setosa": 0.9, "virginica": 0.1}) {
		t.Fatalf("probabilities %v", r.ModelResult.Probabilities)
	}
	if r.LatencyMs < 5 {
		t.Fatalf("latency %vms, want at least 5", r.LatencyMs)
	}
	if _, err := time.Parse(time.RFC3339Nano, r.Timestamp); err != nil {
		t.Fatalf("timestamp %q: %v", r.Timestamp, err)
	}

	// A default answer: no result, no probabilities.
	r = s.response("id-2", "iris", features, map[string]any{"reason": "default", "result": nil, "probabilities": map[string]any{}}, start)
	if r.ModelResult.Result != nil || r.ModelResult.Probabilities != nil {
		t.Fatalf("default answer %+v", r.ModelResult)
	}
	b, _ := json.Marshal(r.ModelResult)
	if string(b) != `{"modelName":"","modelVersion":"","result":null}` {
		t.Fatalf("default answer JSON %s", b)
	}
}
