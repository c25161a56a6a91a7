package model

import (
	"path/filepath"
	"testing"

	"github.com/rendezvous-ml/rendezvous/stages/model/evaluator"
)

// The runner loads a stateful model by the file's kind and scores each
// input under its routing key, so each key builds its own history.
func TestScoreStatefulByKey(t *testing.T) {
	m, err := evaluator.Load(filepath.Join("..", "..", "models", "iris", "stateful.json"))
	if err != nil {
		t.Fatal(err)
	}
	sm, ok := m.(evaluator.Stateful)
	if !ok {
		t.Fatalf("stateful.json loads as %T, not a stateful model", m)
	}
	cfg := Defaults()
	cfg.Name, cfg.Version, cfg.Role = "stateful", "1", RoleChallenger
	in := func(id, key string) map[string]any {
		return map[string]any{
			"request_id": id, "objective": "iris", "key": key,
			"features": map[string]any{"sepalLength": 6.3, "sepalWidth": 3.3, "petalLength": 6.0, "petalWidth": 2.5},
		}
	}
	for i, key := range []string{"u1", "u1", "u2"} {
		s := Score(m, cfg, in(string(rune('a'+i)), key))
		if s["error"] != nil {
			t.Fatalf("score %d: %v", i, s["error"])
		}
	}
	st := sm.Snapshot()
	if st.Entities["u1"].Count != 2 || st.Entities["u2"].Count != 1 || len(st.Entities) != 2 {
		t.Errorf("state by key = %+v, want u1: 2 inputs, u2: 1", st.Entities)
	}
}
