package contract

import (
	"strings"
	"testing"
)

const v1 = `{"type":"record","name":"R","fields":[
 {"name":"id","type":"string"},
 {"name":"n","type":"int"},
 {"name":"gone","type":"string","default":""},
 {"name":"f","type":{"type":"record","name":"F","fields":[{"name":"a","type":"double"}]}}]}`

const v2 = `{"type":"record","name":"R","fields":[
 {"name":"id","type":"string"},
 {"name":"n","type":"long"},
 {"name":"f","type":{"type":"record","name":"F","fields":[{"name":"a","type":"double","default":0},{"name":"b","type":"double","default":1.5}]}}]}`

func TestDiff(t *testing.T) {
	changes, err := Diff(v1, v2)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range changes {
		got = append(got, c.String())
	}
	want := []string{
		"- gone string default \"\"",
		"~ n type: int -> long",
		"~ f.a default: none -> 0",
		"+ f.b double default 1.5",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("diff:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if c, _ := Diff(v1, v1); len(c) != 0 {
		t.Fatalf("a schema differs from itself: %v", c)
	}
	if _, err := Diff("{", v1); err == nil {
		t.Fatal("want an error for a malformed schema")
	}
}
