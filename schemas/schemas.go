// Package schemas holds the Avro contracts between the stages. They are
// embedded so that every binary carries the reader schemas it was built with,
// and registered under the topic-name strategy (<topic>-value).
package schemas

import (
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sort"
)

//go:embed common/*.avsc */*.avsc
var files embed.FS

// ErrUnknownObjective is returned for an objective with no schemas.
var ErrUnknownObjective = errors.New("unknown objective")

// Kind names one contract; each maps to one topic of an objective.
type Kind string

const (
	Request  Kind = "request"
	Input    Kind = "input"
	Score    Kind = "score"
	Result   Kind = "result"
	Decision Kind = "decision"
	Context  Kind = "context"
)

// Kinds lists every contract, in pipeline order.
var Kinds = []Kind{Request, Input, Score, Result, Decision, Context}

// Set is an objective's schemas, by kind.
type Set struct {
	Objective string
	Text      map[Kind]string
}

// Objectives lists the objectives that ship schemas.
func Objectives() []string {
	entries, _ := fs.ReadDir(files, ".")
	var out []string
	for _, e := range entries {
		if e.IsDir() && e.Name() != "common" {
			out = append(out, e.Name())
		}
	}
	sort.Strings(out)
	return out
}

// For returns an objective's schemas as this build embeds them: its own
// request and input records and the common score, result, decision and
// context records.
func For(objective string) (Set, error) { return load(files, objective) }

// FromDir returns an objective's schemas from a directory laid out like
// this package (common/*.avsc and <objective>/*.avsc): the working tree's
// schemas for `rdv schemas`, or a newer contract a stage is told to use.
func FromDir(dir, objective string) (Set, error) {
	return load(os.DirFS(dir), objective)
}

// Load is FromDir when dir is set, else For: the schemas a stage runs with.
func Load(dir, objective string) (Set, error) {
	if dir == "" {
		return For(objective)
	}
	return FromDir(dir, objective)
}

func load(fsys fs.FS, objective string) (Set, error) {
	s := Set{Objective: objective, Text: map[Kind]string{}}
	for _, k := range Kinds {
		dir := "common"
		if k == Request || k == Input {
			dir = objective
		}
		b, err := fs.ReadFile(fsys, dir+"/"+string(k)+".avsc")
		if err != nil {
			if dir == objective {
				return Set{}, fmt.Errorf("schemas for objective %q: %w", objective, ErrUnknownObjective)
			}
			return Set{}, fmt.Errorf("schema %s: %w", k, err)
		}
		s.Text[k] = string(b)
	}
	return s, nil
}

// Field is one feature of an objective's request.
type Field struct {
	Name    string
	Type    string // Avro primitive: double, float, int, long, string, boolean
	Default any    // nil when the field has no default
	HasDef  bool
}

// Features lists the fields of the request's "features" record, in schema
// order, so the frontend can validate a JSON body against the contract.
func (s Set) Features() ([]Field, error) {
	var rec struct {
		Fields []struct {
			Name string          `json:"name"`
			Type json.RawMessage `json:"type"`
		} `json:"fields"`
	}
	if err := json.Unmarshal([]byte(s.Text[Request]), &rec); err != nil {
		return nil, fmt.Errorf("request schema of %s: %w", s.Objective, err)
	}
	for _, f := range rec.Fields {
		if f.Name != "features" {
			continue
		}
		var inner struct {
			Fields []struct {
				Name    string          `json:"name"`
				Type    json.RawMessage `json:"type"`
				Default json.RawMessage `json:"default"`
			} `json:"fields"`
		}
		if err := json.Unmarshal(f.Type, &inner); err != nil {
			return nil, fmt.Errorf("features record of %s: %w", s.Objective, err)
		}
		out := make([]Field, 0, len(inner.Fields))
		for _, ff := range inner.Fields {
			var typ string
			if err := json.Unmarshal(ff.Type, &typ); err != nil {
				return nil, fmt.Errorf("feature %q of %s: only primitive feature types are supported", ff.Name, s.Objective)
			}
			fld := Field{Name: ff.Name, Type: typ}
			if len(ff.Default) > 0 {
				fld.HasDef = true
				if err := json.Unmarshal(ff.Default, &fld.Default); err != nil {
					return nil, fmt.Errorf("default of feature %q: %w", ff.Name, err)
				}
			}
			out = append(out, fld)
		}
		return out, nil
	}
	return nil, fmt.Errorf("request schema of %s has no features record", s.Objective)
}
