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

// issued is a certificate and its key, made in the test (no openssl needed).
type issued struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	der  []byte
}

// issue makes a CA when parent is nil, else a leaf for 127.0.0.1 signed by parent.
func issue(t *testing.T, parent *issued, usage x509.ExtKeyUsage) *issued {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: "circuitd test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		BasicConstraintsValid: true,
	}
	signer, signerKey := tmpl, key
	if parent == nil {
		tmpl.IsCA, tmpl.KeyUsage = true, x509.KeyUsageCertSign|x509.KeyUsageDigitalSignature
	} else {
		tmpl.KeyUsage, tmpl.ExtKeyUsage = x509.KeyUsageDigitalSignature, []x509.ExtKeyUsage{usage}
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
		signer, signerKey = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, &key.PublicKey, signerKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &issued{cert: cert, key: key, der: der}
}

func (i *issued) certPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: i.der})
}

func (i *issued) keyPEM(t *testing.T) []byte {
	der, err := x509.MarshalPKCS8PrivateKey(i.key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

func write(t *testing.T, name string, data []byte) string {
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestTLSAndMTLS(t *testing.T) {
	ca := issue(t, nil, 0)
	server := issue(t, ca, x509.ExtKeyUsageServerAuth)
	client := issue(t, ca, x509.ExtKeyUsageClientAuth)
	roots := x509.NewCertPool()
	roots.AddCert(ca.cert)
	ctx := context.Background()

	d := daemontest.Start(t, "--tls-cert", write(t, "server.pem", server.certPEM()),
		"--tls-key", write(t, "server.key", server.keyPEM(t)), "--tls-client-ca", write(t, "ca.pem", ca.certPEM()))
	pair, err := tls.X509KeyPair(client.certPEM(), client.keyPEM(t))
	if err != nil {
		t.Fatal(err)
	}
	c := dial(t, "https://"+d.Addr, circuit.WithTLS(&tls.Config{RootCAs: roots, Certificates: []tls.Certificate{pair}}))
	p := protector(t, c, "go-mtls")
	permit, err := p.Acquire(ctx)
	if err != nil || permit.Source() != circuit.SourceDaemon {
		t.Fatalf("over mTLS: %v %v", permit, err)
	}
	_ = permit.Success(ctx)

	// Without a client certificate, or without trusting the daemon's, the handshake
	// fails: the daemon is never reached and the fallback decides.
	for name, cfg := range map[string]*tls.Config{
		"no client certificate": {RootCAs: roots},
		"untrusted daemon":      {Certificates: []tls.Certificate{pair}},
	} {
		other := dial(t, "https://"+d.Addr, circuit.WithTLS(cfg), circuit.WithAcquireDeadline(500*time.Millisecond))
		q := protector(t, other, "go-mtls")
		var rejected *circuit.RejectedError
		if _, err := q.Acquire(ctx); !errors.As(err, &rejected) || !rejected.Fallback {
			t.Fatalf("%s: want the fallback's rejection, got %v", name, err)
		}
	}
}
