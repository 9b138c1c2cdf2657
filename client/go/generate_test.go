package circuit_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// The committed stubs are what generate.sh makes from proto/ now.
func TestGeneratedCodeIsFresh(t *testing.T) {
	out := t.TempDir()
	cmd := exec.Command("./generate.sh", out)
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("generate.sh failed (it needs protoc, Debian's protobuf-compiler, and go install): %v\n%s", err, msg)
	}
	fresh, err := filepath.Glob(filepath.Join(out, "circuitv1", "*.go"))
	if err != nil || len(fresh) == 0 {
		t.Fatalf("generate.sh wrote nothing under %s/circuitv1", out)
	}
	committed, _ := filepath.Glob(filepath.Join("circuitv1", "*.go"))
	if len(committed) != len(fresh) {
		t.Fatalf("circuitv1/ holds %d files, generate.sh makes %d: run client/go/generate.sh and commit", len(committed), len(fresh))
	}
	for _, f := range fresh {
		want, _ := os.ReadFile(f)
		got, err := os.ReadFile(filepath.Join("circuitv1", filepath.Base(f)))
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("circuitv1/%s is stale: run client/go/generate.sh and commit", filepath.Base(f))
		}
	}
}
