package e2e

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rendezvous-ml/rendezvous/pipeline/registry"
	"github.com/rendezvous-ml/rendezvous/pipeline/serde"
	"github.com/rendezvous-ml/rendezvous/testcontainers/stack"
)

// EnvPeersPython names the python of the peers venv that ops/peers-setup.sh
// builds (it prints python=...).
const EnvPeersPython = "RDV_TEST_PYTHON"

// TestPeersReadOurTopics proves that other languages' standard clients read
// what the pipeline writes: Confluent's Python client, with Confluent's own
// Avro deserializer fetching writer schemas from our registry, decodes every
// record of the requests, decisions and decoy topics to exactly what the Go
// side decodes, and kcat, reading committed records only, sees the decoy
// log exactly once per accepted call.
func TestPeersReadOurTopics(t *testing.T) {
	python := os.Getenv(EnvPeersPython)
	if python == "" {
		t.Skip("peers: " + EnvPeersPython + " is not set; run ops/peers-setup.sh and set it to the python it prints")
	}
	root, err := stack.Root()
	if err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(root, "testcontainers", "peers", "read_topic.py")
	if out, err := exec.Command(python, "-c", "import confluent_kafka as c; print('confluent-kafka', c.__version__, 'librdkafka', c.libversion()[0])").CombinedOutput(); err != nil {
		t.Fatalf("%s=%s cannot import confluent_kafka: %v\n%s", EnvPeersPython, python, err, out)
	} else {
		t.Logf("peer: %s", strings.TrimSpace(string(out)))
	}

	s := stack.Start(t, stack.Options{})
	accepted := predictAll(t, s, 300, 8)
	t.Logf("%d predict calls accepted", len(accepted))

	// Wait until the logs hold every accepted call.
	for _, topic := range []string{"rdv.iris.decisions", "rdv.iris.decoy"} {
		counts := s.CountKeys(topic, len(accepted), 60*time.Second)
		for id := range accepted {
			if counts[id] == 0 {
				t.Fatalf("%s: accepted request %s missing after 60s (%d keys read)", topic, id, len(counts))
			}
		}
	}

	reg, err := registry.New(registry.Config{URL: s.RegistryURL})
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	sd := serde.New(reg)
	brokers := strings.Join(s.Brokers, ",")

	goSide := map[string][]goRecord{}
	for _, topic := range []string{"rdv.iris.requests", "rdv.iris.inputs", "rdv.iris.scores", "rdv.iris.results", "rdv.iris.decisions", "rdv.iris.decoy"} {
		t.Run("confluent-kafka-python/"+topic, func(t *testing.T) {
			recs := readGo(t, s, sd, topic)
			goSide[topic] = recs
			start := time.Now()
			py := readPython(t, python, script, brokers, s.RegistryURL, topic)
			t.Logf("%s: read_topic.py read %d records in %v", topic, len(py), time.Since(start).Round(time.Millisecond))
			checkSubject(t, reg, sd, topic, recs)
			fields := compareTopic(t, topic, recs, py)
			t.Logf("%s: compared %d records (Go) with %d records (Python), %d leaf fields, all equal", topic, len(recs), len(py), fields)
		})
	}

	// Exactly once: one decoy record and one decision per accepted call.
	for _, topic := range []string{"rdv.iris.decisions", "rdv.iris.decoy"} {
		recs, ok := goSide[topic]
		if !ok {
			continue
		}
		keys := map[string]int{}
		for _, r := range recs {
			keys[string(r.key)]++
		}
		for id := range accepted {
			if keys[id] != 1 {
				t.Errorf("%s: accepted request %s appears %d times, want once", topic, id, keys[id])
			}
		}
		if len(recs) != len(accepted) {
			t.Errorf("%s: %d records for %d accepted calls", topic, len(recs), len(accepted))
		}
	}

	t.Run("kcat", func(t *testing.T) {
		kcat, err := exec.LookPath("kcat")
		if err != nil {
			t.Skip("peers: kcat is not on PATH; ops/peers-setup.sh installs it")
		}
		decoy, ok := goSide["rdv.iris.decoy"]
		if !ok {
			t.Fatal("the Go side did not read rdv.iris.decoy")
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, kcat, "-C", "-b", brokers, "-t", "rdv.iris.decoy",
			"-X", "isolation.level=read_committed", "-o", "beginning", "-e", "-q", "-f", `%k\n`)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		start := time.Now()
		if err := cmd.Run(); err != nil {
			t.Fatalf("kcat: %v\n%s", err, stderr.String())
		}
		out := strings.TrimSuffix(stdout.String(), "\n")
		var keys []string
		if out != "" {
			keys = strings.Split(out, "\n")
		}
		seen := map[string]int{}
		for _, k := range keys {
			seen[k]++
		}
		dupes := 0
		for k, n := range seen {
			if n > 1 {
				dupes++
				t.Errorf("kcat: decoy key %q read %d times", k, n)
			}
		}
		goKeys := map[string]bool{}
		for _, r := range decoy {
			goKeys[string(r.key)] = true
		}
		for k := range goKeys {
			if seen[k] == 0 {
				t.Errorf("kcat: decoy key %q read by the Go side is missing", k)
			}
		}
		for k := range seen {
			if !goKeys[k] {
				t.Errorf("kcat: decoy key %q is not one the Go side read", k)
			}
		}
		t.Logf("rdv.iris.decoy: kcat read %d records (%d distinct keys, %d duplicated) in %v; Go side %d records; %d accepted calls",
			len(keys), len(seen), dupes, time.Since(start).Round(time.Millisecond), len(decoy), len(accepted))
		if len(keys) != len(decoy) || len(keys) != len(accepted) {
			t.Errorf("kcat read %d decoy records, the Go side %d, for %d accepted calls", len(keys), len(decoy), len(accepted))
		}
		if stderr.Len() > 0 {
			t.Logf("kcat stderr: %s", stderr.String())
		}
	})
}

// predictAll sends n predict calls with iris rows from workers goroutines
// and returns the message ids of the accepted ones. Every call must be
// accepted.
func predictAll(t *testing.T, s *stack.Stack, n, workers int) map[string]bool {
	t.Helper()
	rows := irisRows(t)
	var (
		mu       sync.Mutex
		accepted = map[string]bool{}
		firstErr error
		wg       sync.WaitGroup
	)
	next := make(chan int)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				a, err := s.Predict("/predict", rows[i%len(rows)].body)
				if err == nil && (a.Status != http.StatusOK || a.MessageID == "") {
					err = fmt.Errorf("call %d: status %d, message id %q: %s", i, a.Status, a.MessageID, a.Error)
				}
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = err
				}
				if err == nil {
					accepted[a.MessageID] = true
				}
				mu.Unlock()
			}
		}()
	}
	for i := 0; i < n; i++ {
		next <- i
	}
	close(next)
	wg.Wait()
	if firstErr != nil {
		t.Fatalf("predict: %v", firstErr)
	}
	if len(accepted) != n {
		t.Fatalf("%d predict calls gave %d distinct message ids", n, len(accepted))
	}
	return accepted
}

// goRecord is one record as the Go side reads it.
type goRecord struct {
	partition int32
	offset    int64
	key       []byte
	schemaID  int
	value     any // normalized: see normalizeAvro
}

// readGo reads topic from its start to its last stable offset with
// read_committed, and decodes every value with the project's serde.
func readGo(t *testing.T, s *stack.Stack, sd *serde.Serde, topic string) []goRecord {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	adm := kadm.NewClient(s.Client())
	starts, err := adm.ListStartOffsets(ctx, topic)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		t.Fatalf("%s: start offsets: %v", topic, err)
	}
	ends, err := adm.ListCommittedOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		t.Fatalf("%s: end offsets: %v", topic, err)
	}
	next := map[int32]int64{}
	end := map[int32]int64{}
	assign := map[int32]kgo.Offset{}
	starts.Each(func(o kadm.ListedOffset) {
		e, _ := ends.Lookup(topic, o.Partition)
		next[o.Partition] = o.Offset
		end[o.Partition] = e.Offset
		if e.Offset > o.Offset {
			assign[o.Partition] = kgo.NewOffset().At(o.Offset)
		}
	})
	if len(assign) == 0 {
		return nil
	}
	// Control records are kept so that a partition's position is known
	// exactly: the last offsets of a transactional topic are commit markers.
	cl := s.Client(
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: assign}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.KeepControlRecords(),
	)
	done := func() bool {
		for p, e := range end {
			if next[p] < e {
				return false
			}
		}
		return true
	}
	var recs []goRecord
	for !done() {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("%s: not read to the end in time: next offsets %v, ends %v", topic, next, end)
		}
		fs.EachError(func(_ string, p int32, err error) {
			t.Fatalf("%s partition %d: fetch: %v", topic, p, err)
		})
		fs.EachRecord(func(r *kgo.Record) {
			if r.Offset >= end[r.Partition] {
				next[r.Partition] = max(next[r.Partition], r.Offset+1)
				return
			}
			next[r.Partition] = r.Offset + 1
			if r.Attrs.IsControl() {
				return
			}
			native, err := sd.Decode(ctx, r.Value, nil)
			if err != nil {
				t.Fatalf("%s partition %d offset %d: the Go serde cannot decode: %v", topic, r.Partition, r.Offset, err)
			}
			id, _ := serde.SchemaID(r.Value)
			w, err := sd.Writer(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			v, err := normalizeWithSchema(w.Text, native)
			if err != nil {
				t.Fatalf("%s partition %d offset %d: %v", topic, r.Partition, r.Offset, err)
			}
			recs = append(recs, goRecord{partition: r.Partition, offset: r.Offset, key: r.Key, schemaID: id, value: v})
		})
	}
	return recs
}

// checkSubject checks that every writer schema of the topic's records is
// registered under the topic's subject, <topic>-value, as a reader using
// Confluent's topic name strategy (with use.latest.version, say) expects.
func checkSubject(t *testing.T, reg registry.Client, sd *serde.Serde, topic string, recs []goRecord) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	subject := topic + "-value"
	checked := map[int]bool{}
	for _, r := range recs {
		if checked[r.schemaID] {
			continue
		}
		checked[r.schemaID] = true
		w, err := sd.Writer(ctx, r.schemaID)
		if err != nil {
			t.Fatal(err)
		}
		id, version, err := reg.Lookup(ctx, subject, w.Text)
		if err != nil {
			t.Errorf("%s: writer schema %d of record %d/%d is not under subject %s: %v", topic, r.schemaID, r.partition, r.offset, subject, err)
			continue
		}
		if id != r.schemaID {
			t.Errorf("%s: subject %s holds the writer schema of record %d/%d under id %d, the record says %d", topic, subject, r.partition, r.offset, id, r.schemaID)
			continue
		}
		t.Logf("%s: writer schema id %d is version %d of subject %s", topic, id, version, subject)
	}
}

// pyRecord is one line of read_topic.py.
type pyRecord struct {
	Topic     string  `json:"topic"`
	Partition int32   `json:"partition"`
	Offset    int64   `json:"offset"`
	Key       *string `json:"key"`
	KeyBase64 *string `json:"key_base64"`
	Value     any     `json:"value"`
}

func readPython(t *testing.T, python, script, brokers, registryURL, topic string) []pyRecord {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, python, script, "--brokers", brokers, "--registry", registryURL, "--topic", topic)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("read_topic.py --topic %s: %v\n%s", topic, err, stderr.String())
	}
	if stderr.Len() > 0 {
		t.Logf("read_topic.py --topic %s stderr:\n%s", topic, stderr.String())
	}
	dec := json.NewDecoder(&stdout)
	dec.UseNumber()
	var recs []pyRecord
	for {
		var r pyRecord
		if err := dec.Decode(&r); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("read_topic.py --topic %s: output line %d is not JSON: %v", topic, len(recs)+1, err)
		}
		recs = append(recs, r)
	}
	return recs
}

// compareTopic checks both sides read the same records, field by field, and
// returns how many leaf values it compared.
func compareTopic(t *testing.T, topic string, gos []goRecord, pys []pyRecord) int {
	t.Helper()
	type at struct {
		p int32
		o int64
	}
	byPos := map[at]pyRecord{}
	for _, r := range pys {
		if r.Topic != topic {
			t.Errorf("python: record at %d/%d says topic %q", r.Partition, r.Offset, r.Topic)
		}
		if _, dup := byPos[at{r.Partition, r.Offset}]; dup {
			t.Errorf("python: record %d/%d printed twice", r.Partition, r.Offset)
		}
		byPos[at{r.Partition, r.Offset}] = r
	}
	if len(gos) != len(pys) {
		t.Errorf("%s: Go read %d records, Python %d", topic, len(gos), len(pys))
	}
	var diffs []string
	leaves := 0
	seen := map[at]bool{}
	for _, g := range gos {
		pos := at{g.partition, g.offset}
		seen[pos] = true
		p, ok := byPos[pos]
		if !ok {
			diffs = append(diffs, fmt.Sprintf("%d/%d (key %q): read by Go, not by Python", g.partition, g.offset, g.key))
			continue
		}
		var pkey []byte
		switch {
		case p.Key != nil:
			pkey = []byte(*p.Key)
		case p.KeyBase64 != nil:
			pkey, _ = base64.StdEncoding.DecodeString(*p.KeyBase64)
		}
		if (g.key == nil) != (p.Key == nil && p.KeyBase64 == nil) || !bytes.Equal(g.key, pkey) {
			diffs = append(diffs, fmt.Sprintf("%d/%d: key %q (Go) vs %q (Python)", g.partition, g.offset, g.key, pkey))
		}
		leaves += compareValue(fmt.Sprintf("%d/%d value", g.partition, g.offset), g.value, p.Value, &diffs)
	}
	for pos := range byPos {
		if !seen[pos] {
			diffs = append(diffs, fmt.Sprintf("%d/%d: read by Python, not by Go", pos.p, pos.o))
		}
	}
	if len(diffs) > 0 {
		sort.Strings(diffs)
		shown := diffs
		if len(shown) > 30 {
			shown = shown[:30]
		}
		t.Errorf("%s: %d differences between the Go serde and Confluent's Python deserializer; first ones:\n  %s", topic, len(diffs), strings.Join(shown, "\n  "))
	}
	return leaves
}

// compareValue compares a normalized Go value with one decoded from the
// Python side's JSON (numbers as json.Number) and returns the leaves compared.
func compareValue(path string, g, p any, diffs *[]string) int {
	bad := func(format string, args ...any) int {
		*diffs = append(*diffs, path+": "+fmt.Sprintf(format, args...))
		return 1
	}
	switch gv := g.(type) {
	case nil:
		if p != nil {
			return bad("null (Go) vs %#v (Python)", p)
		}
		return 1
	case bool:
		if pv, ok := p.(bool); !ok || pv != gv {
			return bad("%v (Go) vs %#v (Python)", gv, p)
		}
		return 1
	case string:
		if pv, ok := p.(string); !ok || pv != gv {
			return bad("%q (Go) vs %#v (Python)", gv, p)
		}
		return 1
	case int64:
		n, ok := p.(json.Number)
		if !ok {
			return bad("%d (Go) vs %#v (Python)", gv, p)
		}
		if pi, err := n.Int64(); err == nil {
			if pi != gv {
				return bad("%d (Go) vs %s (Python)", gv, n)
			}
			return 1
		}
		if pf, err := n.Float64(); err != nil || pf != float64(gv) {
			return bad("%d (Go) vs %s (Python)", gv, n)
		}
		return 1
	case float64:
		if math.IsNaN(gv) || math.IsInf(gv, 0) {
			want := map[bool]string{true: "Infinity", false: "-Infinity"}[gv > 0]
			if math.IsNaN(gv) {
				want = "NaN"
			}
			if p != want {
				return bad("%v (Go) vs %#v (Python)", gv, p)
			}
			return 1
		}
		n, ok := p.(json.Number)
		if !ok {
			return bad("%v (Go) vs %#v (Python)", gv, p)
		}
		if pf, err := n.Float64(); err != nil || pf != gv {
			return bad("%v (Go) vs %s (Python)", gv, n)
		}
		return 1
	case map[string]any:
		pv, ok := p.(map[string]any)
		if !ok {
			return bad("map/record (Go) vs %T (Python)", p)
		}
		n := 0
		for k, x := range gv {
			y, ok := pv[k]
			if !ok {
				n += bad("field %q: only the Go side has it", k)
				continue
			}
			n += compareValue(path+"."+k, x, y, diffs)
		}
		for k := range pv {
			if _, ok := gv[k]; !ok {
				n += bad("field %q: only the Python side has it", k)
			}
		}
		return n
	case []any:
		pv, ok := p.([]any)
		if !ok {
			return bad("array (Go) vs %T (Python)", p)
		}
		if len(pv) != len(gv) {
			return bad("array of %d (Go) vs %d (Python)", len(gv), len(pv))
		}
		n := 0
		for i := range gv {
			n += compareValue(fmt.Sprintf("%s[%d]", path, i), gv[i], pv[i], diffs)
		}
		return n
	}
	return bad("Go value of type %T has no comparison", g)
}

// normalizeWithSchema turns goavro's native form of a value written with
// schema text into plain values that compare with the Python side's: unions
// unwrapped (goavro gives a non-null branch as {"type name": value}), ints
// and longs as int64, floats and doubles as float64, bytes and fixed as
// base64 text.
func normalizeWithSchema(text string, v any) (any, error) {
	var tree any
	if err := json.Unmarshal([]byte(text), &tree); err != nil {
		return nil, fmt.Errorf("writer schema: %w", err)
	}
	names := map[string]namedType{}
	indexNames(tree, "", names)
	return normalizeAvro(tree, v, "", names)
}

type namedType struct {
	schema map[string]any
	ns     string // the namespace its own nested names inherit
}

var avroPrimitives = map[string]bool{
	"null": true, "boolean": true, "int": true, "long": true,
	"float": true, "double": true, "bytes": true, "string": true,
}

// fullName is a named type's full name and the namespace it passes on.
func fullName(s map[string]any, ns string) (full, inner string) {
	name, _ := s["name"].(string)
	if i := strings.LastIndexByte(name, '.'); i >= 0 {
		return name, name[:i]
	}
	if n, ok := s["namespace"].(string); ok {
		ns = n
	}
	if ns == "" {
		return name, ""
	}
	return ns + "." + name, ns
}

func indexNames(schema any, ns string, names map[string]namedType) {
	switch s := schema.(type) {
	case []any:
		for _, b := range s {
			indexNames(b, ns, names)
		}
	case map[string]any:
		switch t := s["type"].(type) {
		case string:
			switch t {
			case "record", "error", "enum", "fixed":
				full, inner := fullName(s, ns)
				names[full] = namedType{schema: s, ns: inner}
				if fields, ok := s["fields"].([]any); ok {
					for _, f := range fields {
						if fm, ok := f.(map[string]any); ok {
							indexNames(fm["type"], inner, names)
						}
					}
				}
			case "array":
				indexNames(s["items"], ns, names)
			case "map":
				indexNames(s["values"], ns, names)
			}
		default:
			indexNames(t, ns, names)
		}
	}
}

// lookupName finds a named type referenced by name from namespace ns.
func lookupName(name, ns string, names map[string]namedType) (namedType, string, bool) {
	if !strings.Contains(name, ".") && ns != "" {
		if n, ok := names[ns+"."+name]; ok {
			return n, ns + "." + name, true
		}
	}
	n, ok := names[name]
	return n, name, ok
}

// branchName is the name goavro gives a union branch.
func branchName(b any, ns string, names map[string]namedType) string {
	switch s := b.(type) {
	case string:
		if avroPrimitives[s] {
			return s
		}
		if _, full, ok := lookupName(s, ns, names); ok {
			return full
		}
		return s
	case map[string]any:
		t, _ := s["type"].(string)
		switch t {
		case "record", "error", "enum", "fixed":
			full, _ := fullName(s, ns)
			return full
		}
		return t
	}
	return ""
}

func normalizeAvro(schema any, v any, ns string, names map[string]namedType) (any, error) {
	switch s := schema.(type) {
	case string:
		if avroPrimitives[s] {
			return normalizePrimitive(s, v)
		}
		n, _, ok := lookupName(s, ns, names)
		if !ok {
			return nil, fmt.Errorf("unknown type name %q", s)
		}
		return normalizeAvro(n.schema, v, n.ns, names)
	case []any:
		if v == nil {
			return nil, nil
		}
		m, ok := v.(map[string]any)
		if !ok || len(m) != 1 {
			return nil, fmt.Errorf("union value %#v is not goavro's {type: value}", v)
		}
		for k, inner := range m {
			for _, b := range s {
				if branchName(b, ns, names) == k {
					return normalizeAvro(b, inner, ns, names)
				}
			}
			return nil, fmt.Errorf("union has no branch %q", k)
		}
	case map[string]any:
		t, ok := s["type"].(string)
		if !ok {
			return normalizeAvro(s["type"], v, ns, names)
		}
		switch t {
		case "record", "error":
			_, inner := fullName(s, ns)
			m, ok := v.(map[string]any)
			if !ok {
				return nil, fmt.Errorf("record %v: value is %T", s["name"], v)
			}
			out := make(map[string]any, len(m))
			fields, _ := s["fields"].([]any)
			for _, f := range fields {
				fm, _ := f.(map[string]any)
				name, _ := fm["name"].(string)
				x, ok := m[name]
				if !ok {
					return nil, fmt.Errorf("record %v: field %s missing", s["name"], name)
				}
				r, err := normalizeAvro(fm["type"], x, inner, names)
				if err != nil {
					return nil, fmt.Errorf("%s: %w", name, err)
				}
				out[name] = r
			}
			return out, nil
		case "map":
			m, ok := v.(map[string]any)
			if !ok {
				return nil, fmt.Errorf("map: value is %T", v)
			}
			out := make(map[string]any, len(m))
			for k, x := range m {
				r, err := normalizeAvro(s["values"], x, ns, names)
				if err != nil {
					return nil, fmt.Errorf("[%q]: %w", k, err)
				}
				out[k] = r
			}
			return out, nil
		case "array":
			a, ok := v.([]any)
			if !ok {
				return nil, fmt.Errorf("array: value is %T", v)
			}
			out := make([]any, len(a))
			for i, x := range a {
				r, err := normalizeAvro(s["items"], x, ns, names)
				if err != nil {
					return nil, fmt.Errorf("[%d]: %w", i, err)
				}
				out[i] = r
			}
			return out, nil
		case "enum":
			if str, ok := v.(string); ok {
				return str, nil
			}
			return nil, fmt.Errorf("enum: value is %T", v)
		case "fixed":
			if b, ok := v.([]byte); ok {
				return base64.StdEncoding.EncodeToString(b), nil
			}
			return nil, fmt.Errorf("fixed: value is %T", v)
		default:
			if _, logical := s["logicalType"]; logical {
				return nil, fmt.Errorf("logical type %v has no comparison here", s["logicalType"])
			}
			return normalizeAvro(t, v, ns, names)
		}
	}
	return nil, fmt.Errorf("schema %#v not understood", schema)
}

func normalizePrimitive(t string, v any) (any, error) {
	switch x := v.(type) {
	case nil:
		if t == "null" {
			return nil, nil
		}
	case bool:
		if t == "boolean" {
			return x, nil
		}
	case int32:
		return int64(x), nil
	case int64:
		return x, nil
	case float32:
		return float64(x), nil
	case float64:
		return x, nil
	case string:
		return x, nil
	case []byte:
		return base64.StdEncoding.EncodeToString(x), nil
	}
	return nil, fmt.Errorf("%s: value is %T", t, v)
}

// TestPeersCompare checks the comparison itself, without a stack: goavro's
// union wrappers are unwrapped by schema, and a differing leaf is reported.
func TestPeersCompare(t *testing.T) {
	const schema = `{"type":"record","name":"R","namespace":"rdv.t","fields":[
		{"name":"u","type":["null","string"]},
		{"name":"n","type":["null","string"]},
		{"name":"one","type":{"type":"map","values":"double"}},
		{"name":"sub","type":{"type":"record","name":"S","fields":[{"name":"i","type":"int"},{"name":"b","type":"bytes"}]}},
		{"name":"again","type":["null","S"]},
		{"name":"xs","type":{"type":"array","items":"long"}}]}`
	native := map[string]any{
		"u":     map[string]any{"string": "x"},
		"n":     nil,
		"one":   map[string]any{"string": 1.5}, // a map with one key: not a union
		"sub":   map[string]any{"i": int32(7), "b": []byte{1, 2}},
		"again": map[string]any{"rdv.t.S": map[string]any{"i": int32(-1), "b": []byte{}}},
		"xs":    []any{int64(1) << 52, int64(-3)},
	}
	g, err := normalizeWithSchema(schema, native)
	if err != nil {
		t.Fatal(err)
	}
	py := func(text string) any {
		d := json.NewDecoder(strings.NewReader(text))
		d.UseNumber()
		var v any
		if err := d.Decode(&v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	same := `{"u":"x","n":null,"one":{"string":1.5},"sub":{"i":7,"b":"AQI="},"again":{"i":-1,"b":""},"xs":[4503599627370496,-3]}`
	var diffs []string
	if n := compareValue("v", g, py(same), &diffs); len(diffs) != 0 || n != 9 {
		t.Fatalf("equal values: %d leaves, diffs %v", n, diffs)
	}
	for _, other := range []string{
		`{"u":"y","n":null,"one":{"string":1.5},"sub":{"i":7,"b":"AQI="},"again":{"i":-1,"b":""},"xs":[4503599627370496,-3]}`,
		`{"u":"x","n":"","one":{"string":1.5},"sub":{"i":7,"b":"AQI="},"again":{"i":-1,"b":""},"xs":[4503599627370496,-3]}`,
		`{"u":"x","n":null,"one":{"string":1.25},"sub":{"i":7,"b":"AQI="},"again":{"i":-1,"b":""},"xs":[4503599627370496,-3]}`,
		`{"u":"x","n":null,"one":{"string":1.5},"sub":{"i":7,"b":"AQI="},"again":{"i":-1,"b":""},"xs":[4503599627370497,-3]}`,
		`{"u":"x","n":null,"one":{"string":1.5},"sub":{"i":7,"b":"AQI="},"again":{"i":-1,"b":""},"xs":[4503599627370496]}`,
		`{"u":"x","n":null,"one":{"string":1.5},"sub":{"i":7,"b":"AQI=","c":1},"again":{"i":-1,"b":""},"xs":[4503599627370496,-3]}`,
		`{"u":"x","n":null,"one":{"string":1.5},"sub":{"i":7,"b":"AQI="},"again":null,"xs":[4503599627370496,-3]}`,
	} {
		diffs = nil
		compareValue("v", g, py(other), &diffs)
		if len(diffs) != 1 {
			t.Errorf("%s: want one difference, got %v", other, diffs)
		}
	}
}
