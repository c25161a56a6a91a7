package serde_test

import (
	"context"
	"fmt"
	"sync"

	"github.com/rendezvous-ml/rendezvous/pipeline/serde"
)

// memRegistry is an in-memory serde.Registry: schemas by id, with an
// identical schema text getting back the id it already has.
type memRegistry struct {
	mu      sync.Mutex
	byID    map[int]string
	ids     map[string]int
	fail    error // when set, SchemaByID returns it
	lookups int   // SchemaByID calls
}

func newMemRegistry() *memRegistry {
	return &memRegistry{byID: map[int]string{}, ids: map[string]int{}}
}

func (r *memRegistry) SchemaByID(_ context.Context, id int) (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lookups++
	if r.fail != nil {
		return "", r.fail
	}
	s, ok := r.byID[id]
	if !ok {
		return "", fmt.Errorf("schema %d: %w", id, serde.ErrUnknownSchema)
	}
	return s, nil
}

func (r *memRegistry) Register(_ context.Context, _ string, schema string) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if id, ok := r.ids[schema]; ok {
		return id, nil
	}
	id := len(r.byID) + 1
	r.byID[id] = schema
	r.ids[schema] = id
	return id, nil
}

// add stores a schema under a chosen id, as another producer would have.
func (r *memRegistry) add(id int, schema string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.byID[id] = schema
	r.ids[schema] = id
}
