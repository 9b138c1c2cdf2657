package circuit_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	circuit "example.invalid/resilient-circuit/client/go"
	"example.invalid/resilient-circuit/client/go/internal/daemontest"
)

// selfSigned writes a certificate for 127.0.0.1 and its key; returns their paths and a
// pool that trusts it.
func selfSigned(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "circuitd test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	if err := os.WriteFile(certFile, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	pool = x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	return certFile, keyFile, pool
}

func TestTLS(t *testing.T) {
	certFile, keyFile, pool := selfSigned(t)
	d := daemontest.Start(t, "--tls-cert", certFile, "--tls-key", keyFile)
	c := dial(t, "https://"+d.Addr, circuit.WithTLS(&tls.Config{RootCAs: pool}))
	p := protector(t, c, "go-tls", circuit.WithFallback(circuit.FallbackDeny))
	permit, err := p.Acquire(context.Background())
	if err != nil || permit.Source() != circuit.SourceDaemon {
		t.Fatalf("over TLS: %v %v", permit, err)
	}
	_ = permit.Success(context.Background())

	// A client that does not trust the certificate never reaches the daemon: the
	// fallback decides.
	untrusting := dial(t, "https://"+d.Addr, circuit.WithAcquireDeadline(500*time.Millisecond))
	q := protector(t, untrusting, "go-tls")
	var rejected *circuit.RejectedError
	if _, err := q.Acquire(context.Background()); !errors.As(err, &rejected) || !rejected.Fallback {
		t.Fatalf("without trusting the daemon's certificate: want the fallback's rejection, got %v", err)
	}
}
