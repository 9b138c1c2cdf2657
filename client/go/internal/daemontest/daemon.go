// Package daemontest starts and stops a real circuitd for the Go client's tests and
// benchmarks: the binary from $CIRCUITD_BIN, on 127.0.0.1:0, its address read from the
// `listening on ADDR` line it prints, stopped by its pid.
package daemontest

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Deadline bounds every wait on the daemon (start, stop): generous, never a sleep.
const Deadline = 30 * time.Second

// Binary is $CIRCUITD_BIN; a test fails (never skips) when it is unset or missing.
func Binary(t testing.TB) string {
	t.Helper()
	bin := os.Getenv("CIRCUITD_BIN")
	if bin == "" {
		t.Fatal("CIRCUITD_BIN is not set: build the daemon with `cargo build -p circuitd --features etcd` " +
			"at the repository's root and export CIRCUITD_BIN=$PWD/target/debug/circuitd (./run-tests does both)")
	}
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("CIRCUITD_BIN=%s: %v: build it with `cargo build -p circuitd --features etcd`", bin, err)
	}
	return bin
}

// Daemon is one running circuitd.
type Daemon struct {
	// Addr is host:port, as the daemon printed it.
	Addr   string
	bin    string
	flags  []string
	cmd    *exec.Cmd
	exited chan struct{}
	frozen bool
}

// Start runs circuitd with in-memory state and extra flags; the test's cleanup stops it.
func Start(t testing.TB, extra ...string) *Daemon {
	t.Helper()
	return StartWith(t, append([]string{"--in-memory"}, extra...))
}

// StartWith runs circuitd with exactly these flags besides --listen.
func StartWith(t testing.TB, flags []string) *Daemon {
	t.Helper()
	d := &Daemon{bin: Binary(t), flags: flags}
	if err := d.launch("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Stop() })
	return d
}

// StartDir runs circuitd on a fresh data directory (durable state, so Restart keeps
// every protector, the revision and the epoch) with flags.
func StartDir(t testing.TB, flags ...string) *Daemon {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "data")
	return StartWith(t, append([]string{"--data-dir", dir}, flags...))
}

func (d *Daemon) launch(listen string) error {
	cmd := exec.Command(d.bin, append([]string{"--listen", listen}, d.flags...)...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	cmd.Stderr = os.Stderr
	if !testing.Verbose() {
		cmd.Stderr = nil
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", d.bin, err)
	}
	addr := make(chan string, 1)
	d.exited = make(chan struct{})
	go func() {
		scanner := bufio.NewScanner(stdout)
		for scanner.Scan() {
			if a, ok := strings.CutPrefix(scanner.Text(), "listening on "); ok {
				select {
				case addr <- strings.TrimSpace(a):
				default:
				}
			}
		}
		_ = cmd.Wait()
		close(d.exited)
	}()
	select {
	case a := <-addr:
		d.Addr, d.cmd = a, cmd
		return nil
	case <-d.exited:
		return fmt.Errorf("circuitd exited before listening (flags %v)", d.flags)
	case <-time.After(Deadline):
		_ = cmd.Process.Kill()
		return fmt.Errorf("circuitd did not print `listening on` within %s", Deadline)
	}
}

// Stop sends SIGTERM (SIGKILL past the deadline) and waits for the process to exit.
func (d *Daemon) Stop() error {
	if d.cmd == nil {
		return nil
	}
	select {
	case <-d.exited:
		return nil
	default:
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	if d.frozen {
		_ = d.cmd.Process.Signal(syscall.SIGCONT)
		d.frozen = false
	}
	select {
	case <-d.exited:
		return nil
	case <-time.After(Deadline):
		_ = d.cmd.Process.Kill()
		<-d.exited
		return errors.New("circuitd outlived SIGTERM; killed")
	}
}

// Restart starts the daemon again on the same address with the same flags.
func (d *Daemon) Restart() error {
	if err := d.Stop(); err != nil {
		return err
	}
	return d.launch(d.Addr)
}

// Freeze stops the process (SIGSTOP): it keeps its connections and answers nothing.
func (d *Daemon) Freeze() error {
	d.frozen = true
	if err := d.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		return err
	}
	// kill(2) only queues the stop: wait until every thread has stopped, so that nothing
	// sent after Freeze can be answered before Thaw.
	until := time.Now().Add(10 * time.Second)
	for !stoppedAll(d.cmd.Process.Pid) {
		if time.Now().After(until) {
			return fmt.Errorf("circuitd (pid %d) did not stop on SIGSTOP", d.cmd.Process.Pid)
		}
	}
	return nil
}

// stoppedAll says whether every thread of process pid is stopped (state T in
// /proc/PID/task/TID/stat).
func stoppedAll(pid int) bool {
	dir := fmt.Sprintf("/proc/%d/task", pid)
	tasks, err := os.ReadDir(dir)
	if err != nil {
		return false
	}
	for _, t := range tasks {
		stat, err := os.ReadFile(filepath.Join(dir, t.Name(), "stat"))
		if err != nil {
			return false
		}
		s := string(stat)
		i := strings.LastIndexByte(s, ')')
		if i < 0 || i+2 >= len(s) || s[i+2] != 'T' {
			return false
		}
	}
	return true
}

// Thaw resumes a frozen daemon (SIGCONT).
func (d *Daemon) Thaw() error {
	d.frozen = false
	return d.cmd.Process.Signal(syscall.SIGCONT)
}
