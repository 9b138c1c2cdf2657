package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	pb "example.invalid/resilient-circuit/client/go/circuitv1"
	"example.invalid/resilient-circuit/client/go/internal/daemontest"
)

// The agent speaks the protocol of conformance/README.md section 3: ready, its own
// trip and an operator's change as events, ok per command, error for a bad one.
func TestAgentProtocol(t *testing.T) {
	d := daemontest.Start(t)
	bin := filepath.Join(t.TempDir(), "conformance-agent")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, d.Addr, "go-agent")
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 64)
	go func() {
		s := bufio.NewScanner(stdout)
		for s.Scan() {
			lines <- s.Text()
		}
		close(lines)
	}()
	expect := func(want ...string) {
		t.Helper()
		for _, w := range want {
			select {
			case got := <-lines:
				if got != w {
					t.Fatalf("agent said %q, want %q", got, w)
				}
			case <-time.After(daemontest.Deadline):
				t.Fatalf("agent said nothing within %s, want %q", daemontest.Deadline, w)
			}
		}
	}
	send := func(line string) {
		if _, err := io.WriteString(stdin, line+"\n"); err != nil {
			t.Fatal(err)
		}
	}
	expect("ready")
	send("succeed 1")
	expect("ok succeed 1")
	// Failure limit 2/2: the second failure trips, and the answer that says so comes
	// before the command is done.
	send("fail 2")
	expect("event CLOSED OPEN", "ok fail 2")
	send("fly 1")
	expect(`error cannot do "fly 1"`)

	cc, err := grpc.NewClient("passthrough:///"+d.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	_, err = pb.NewAdminServiceClient(cc).SetStatus(context.Background(),
		&pb.SetStatusRequest{Name: "go-agent", Status: pb.Status_STATUS_CLOSED})
	if err != nil {
		t.Fatal(err)
	}
	expect("event OPEN CLOSED")
	send("quit")
	if err := cmd.Wait(); err != nil {
		t.Fatal(fmt.Errorf("the agent's exit: %w", err))
	}
}
