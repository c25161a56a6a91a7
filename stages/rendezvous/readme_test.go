package rendezvous

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The policy examples the README shows are documents the stage accepts.
func TestReadmePolicyExamples(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	start := strings.Index(text, "```jsonc\n")
	if start < 0 {
		t.Fatal("README has no jsonc block of policy examples")
	}
	block := text[start+len("```jsonc\n"):]
	block = block[:strings.Index(block, "```")]
	var docs []string
	var cur []string
	flush := func() {
		if len(cur) > 0 {
			docs = append(docs, strings.Join(cur, "\n"))
			cur = nil
		}
	}
	for _, line := range strings.Split(block, "\n") {
		switch {
		case strings.TrimSpace(line) == "":
			flush()
		case strings.HasPrefix(strings.TrimSpace(line), "//"):
		default:
			cur = append(cur, line)
		}
	}
	flush()
	if len(docs) < 7 {
		t.Fatalf("found %d examples, want at least 7", len(docs))
	}
	dir := t.TempDir()
	for i, d := range docs {
		path := filepath.Join(dir, "policy.json")
		if err := os.WriteFile(path, []byte(d), 0o644); err != nil {
			t.Fatal(err)
		}
		c := Defaults()
		if c.Policy, err = LoadPolicy(path); err != nil {
			t.Errorf("example %d: %v\n%s", i+1, err, d)
			continue
		}
		if err := c.Validate(); err != nil {
			t.Errorf("example %d: the stage config: %v", i+1, err)
		}
	}
}
