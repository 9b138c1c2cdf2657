// Command conformance-agent is the Go client's agent of the cross-language test
// (conformance/README.md, section 3): `conformance-agent ADDRESS NAME` makes one
// protector (the client's default mode, fallback deny, cooldown 60 s, failure limit
// 2/2), reports every status change as `event FROM TO`, and runs the commands it reads
// on stdin (`fail N`, `succeed N`, `quit`), answering `ok COMMAND` or `error TEXT`.
package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	circuit "example.invalid/resilient-circuit/client/go"
	pb "example.invalid/resilient-circuit/client/go/circuitv1"
)

var errFailed = errors.New("the agent's call failed, as asked")

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: conformance-agent ADDRESS NAME")
		os.Exit(2)
	}
	if err := run(os.Args[1], os.Args[2]); err != nil {
		fmt.Fprintln(os.Stderr, "conformance-agent:", err)
		os.Exit(1)
	}
}

func run(address, name string) error {
	var out sync.Mutex // each line is written whole
	say := func(format string, args ...any) {
		out.Lock()
		defer out.Unlock()
		fmt.Fprintf(os.Stdout, format+"\n", args...)
	}
	statusName := func(s pb.Status) string { return strings.TrimPrefix(s.String(), "STATUS_") }

	client, err := circuit.Dial(address, circuit.WithAcquireDeadline(2*time.Second))
	if err != nil {
		return err
	}
	defer client.Close()
	ctx := context.Background()
	p, err := client.Protector(ctx, name,
		circuit.WithPolicy(circuit.Cooldown(60*time.Second), circuit.FailureLimit(2, 2)),
		circuit.WithFallback(circuit.FallbackDeny),
		circuit.OnStatusChange(func(c circuit.StatusChange) { say("event %s %s", statusName(c.From), statusName(c.To)) }))
	if err != nil {
		return err
	}
	say("ready")

	lines := bufio.NewScanner(os.Stdin)
	for lines.Scan() {
		line := strings.TrimSpace(lines.Text())
		verb, arg, _ := strings.Cut(line, " ")
		n, convErr := strconv.Atoi(arg)
		switch {
		case verb == "quit":
			return nil
		case (verb == "fail" || verb == "succeed") && convErr == nil && n >= 0:
			for range n {
				err := p.Execute(ctx, func(context.Context) error {
					if verb == "fail" {
						return errFailed
					}
					return nil
				})
				if err != nil && !errors.Is(err, errFailed) && !errors.Is(err, circuit.ErrRejected) {
					fmt.Fprintln(os.Stderr, "conformance-agent:", err)
				}
			}
			say("ok %s", line)
		default:
			say("error cannot do %q", line)
		}
	}
	return lines.Err()
}
