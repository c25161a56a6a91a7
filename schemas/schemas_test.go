package schemas_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/linkedin/goavro/v2"

	"github.com/rendezvous-ml/rendezvous/schemas"
)

func TestForIris(t *testing.T) {
	set, err := schemas.For("iris")
	if err != nil {
		t.Fatal(err)
	}
	if set.Objective != "iris" {
		t.Fatalf("objective %q", set.Objective)
	}
	if len(set.Text) != len(schemas.Kinds) {
		t.Fatalf("%d schemas, want one per kind (%d)", len(set.Text), len(schemas.Kinds))
	}
	wantName := map[schemas.Kind]string{
		schemas.Request: "rdv.iris.Request", schemas.Input: "rdv.iris.Input", schemas.Score: "rdv.Score",
		schemas.Result: "rdv.Result", schemas.Decision: "rdv.Decision", schemas.Context: "rdv.Context",
	}
	for _, k := range schemas.Kinds {
		text, ok := set.Text[k]
		if !ok || text == "" {
			t.Errorf("no %s schema", k)
			continue
		}
		codec, err := goavro.NewCodec(text)
		if err != nil {
			t.Errorf("%s schema does not parse: %v", k, err)
			continue
		}
		if codec.Schema() == "" {
			t.Errorf("%s: empty canonical schema", k)
		}
		var head struct{ Type, Name, Namespace string }
		if err := json.Unmarshal([]byte(text), &head); err != nil {
			t.Fatal(err)
		}
		if head.Type != "record" || head.Namespace+"."+head.Name != wantName[k] {
			t.Errorf("%s schema is %s %s.%s, want record %s", k, head.Type, head.Namespace, head.Name, wantName[k])
		}
	}
}

func TestKindsOrder(t *testing.T) {
	want := []schemas.Kind{"request", "input", "score", "result", "decision", "context"}
	if !reflect.DeepEqual(schemas.Kinds, want) {
		t.Fatalf("Kinds = %v, want %v", schemas.Kinds, want)
	}
}

func TestForUnknownObjective(t *testing.T) {
	for _, name := range []string{"nope", "", "common", "../iris", "IRIS"} {
		set, err := schemas.For(name)
		if name == "common" && err == nil {
			t.Errorf("For(common) = %v: common is not an objective", set)
			continue
		}
		if !errors.Is(err, schemas.ErrUnknownObjective) {
			t.Errorf("For(%q) err = %v, want ErrUnknownObjective", name, err)
		}
		if set.Text != nil {
			t.Errorf("For(%q) returned schemas with its error", name)
		}
	}
	_, err := schemas.For("nope")
	if !strings.Contains(fmt.Sprint(err), `"nope"`) {
		t.Errorf("error %v does not name the objective", err)
	}
}

func TestFeaturesIris(t *testing.T) {
	set, err := schemas.For("iris")
	if err != nil {
		t.Fatal(err)
	}
	fields, err := set.Features()
	if err != nil {
		t.Fatal(err)
	}
	want := []schemas.Field{
		{Name: "sepalLength", Type: "double"},
		{Name: "sepalWidth", Type: "double"},
		{Name: "petalLength", Type: "double"},
		{Name: "petalWidth", Type: "double"},
	}
	if !reflect.DeepEqual(fields, want) {
		t.Fatalf("Features() = %+v, want %+v", fields, want)
	}
}

func TestFeaturesOfOtherSchemas(t *testing.T) {
	req := func(features string) schemas.Set {
		return schemas.Set{Objective: "x", Text: map[schemas.Kind]string{schemas.Request: `{"type":"record","name":"R","fields":[
			{"name":"request_id","type":"string"},
			{"name":"features","type":` + features + `}]}`}}
	}
	fields, err := req(`{"type":"record","name":"F","fields":[
		{"name":"n","type":"int","default":3},
		{"name":"s","type":"string","default":"eu"},
		{"name":"b","type":"boolean","default":false},
		{"name":"l","type":"long"}]}`).Features()
	if err != nil {
		t.Fatal(err)
	}
	want := []schemas.Field{
		{Name: "n", Type: "int", Default: float64(3), HasDef: true},
		{Name: "s", Type: "string", Default: "eu", HasDef: true},
		{Name: "b", Type: "boolean", Default: false, HasDef: true},
		{Name: "l", Type: "long"},
	}
	if !reflect.DeepEqual(fields, want) {
		t.Fatalf("got  %+v\nwant %+v", fields, want)
	}

	if _, err := req(`{"type":"record","name":"F","fields":[{"name":"m","type":{"type":"map","values":"double"}}]}`).Features(); err == nil ||
		!strings.Contains(err.Error(), `feature "m"`) {
		t.Errorf("a non-primitive feature: err = %v", err)
	}
	noFeatures := schemas.Set{Objective: "x", Text: map[schemas.Kind]string{schemas.Request: `{"type":"record","name":"R","fields":[{"name":"a","type":"string"}]}`}}
	if _, err := noFeatures.Features(); err == nil || !strings.Contains(err.Error(), "no features record") {
		t.Errorf("no features: err = %v", err)
	}
	if _, err := (schemas.Set{Objective: "x", Text: map[schemas.Kind]string{schemas.Request: `{`}}).Features(); err == nil {
		t.Error("malformed request schema accepted")
	}
}

func TestObjectives(t *testing.T) {
	objs := schemas.Objectives()
	if !slices.Contains(objs, "iris") {
		t.Fatalf("Objectives() = %v, want iris among them", objs)
	}
	if slices.Contains(objs, "common") {
		t.Fatalf("Objectives() = %v lists the common directory", objs)
	}
	if !slices.IsSorted(objs) {
		t.Fatalf("Objectives() = %v is not sorted", objs)
	}
	for _, o := range objs {
		if _, err := schemas.For(o); err != nil {
			t.Errorf("listed objective %s: %v", o, err)
		}
	}
}

// Every objective's request and input carry the same features record, since
// the enricher copies one into the other.
func TestRequestAndInputShareFeatures(t *testing.T) {
	for _, o := range schemas.Objectives() {
		set, err := schemas.For(o)
		if err != nil {
			t.Fatal(err)
		}
		input := schemas.Set{Objective: o, Text: map[schemas.Kind]string{schemas.Request: set.Text[schemas.Input]}}
		a, err1 := set.Features()
		b, err2 := input.Features()
		if err1 != nil || err2 != nil || !reflect.DeepEqual(a, b) {
			t.Errorf("%s: request features %v (%v), input features %v (%v)", o, a, err1, b, err2)
		}
	}
}

func ExampleFor() {
	set, err := schemas.For("iris")
	if err != nil {
		panic(err)
	}
	fields, _ := set.Features()
	for _, f := range fields {
		fmt.Println(f.Name, f.Type)
	}
	// Output:
	// sepalLength double
	// sepalWidth double
	// petalLength double
	// petalWidth double
}
