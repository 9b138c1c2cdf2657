package circuit_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	pb "example.invalid/resilient-circuit/client/go/circuitv1"
)

// conn is the harness's own channel to the daemon, never the client's under test.
func conn(t testing.TB, addr string) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

func admin(t testing.TB, addr string) pb.AdminServiceClient {
	return pb.NewAdminServiceClient(conn(t, addr))
}

// inspect is GetProtector over the harness's own channel.
func inspect(t testing.TB, addr, name string) *pb.Protector {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	resp, err := pb.NewProtectorServiceClient(conn(t, addr)).GetProtector(ctx, &pb.GetProtectorRequest{Name: name})
	if err != nil {
		t.Fatal(err)
	}
	return resp.Protector
}

// waitFor polls cond (a poll interval, not a synchronisation) until it holds or the
// deadline passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	end := time.Now().Add(deadline)
	for !cond() {
		if time.Now().After(end) {
			t.Fatalf("no %s within %s", what, deadline)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
