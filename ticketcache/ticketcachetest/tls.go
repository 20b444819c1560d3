package ticketcachetest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// TLSServer is a redis-server that speaks TLS only (rediss://), with a
// certificate for 127.0.0.1 and localhost signed by a throwaway CA made for
// the test.
type TLSServer struct {
	Addr string
	// CAFile is the PEM file of the CA that signed the server's
	// certificate: what FACESYNC_REDIS_CA_FILE names.
	CAFile string
	Dir    string
}

// URL returns the server as a rediss:// FACESYNC_REDIS_URL for database db.
func (s *TLSServer) URL(db int) string { return fmt.Sprintf("rediss://%s/%d", s.Addr, db) }

// StartTLSServer starts a redis-server listening with TLS only (--port 0,
// --tls-port) on a free loopback port, with a CA and server certificate
// generated in a temporary folder. It is killed when the test ends.
func StartTLSServer(t testing.TB) *TLSServer {
	t.Helper()
	dir := t.TempDir()
	ca, caKey, err := WriteCA(filepath.Join(dir, "ca.pem"))
	if err != nil {
		t.Fatalf("make test CA: %v", err)
	}
	if err := writeServerCert(dir, ca, caKey); err != nil {
		t.Fatalf("make test server certificate: %v", err)
	}
	s := &TLSServer{CAFile: filepath.Join(dir, "ca.pem"), Dir: dir}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	for attempt := 0; attempt < 5; attempt++ {
		p, err := freePort()
		if err != nil {
			t.Fatal(err)
		}
		cmd, err := startProcess(
			"--bind", "127.0.0.1", "--port", "0", "--tls-port", strconv.Itoa(p),
			"--tls-cert-file", filepath.Join(dir, "server.pem"),
			"--tls-key-file", filepath.Join(dir, "server-key.pem"),
			"--tls-ca-cert-file", s.CAFile,
			"--tls-auth-clients", "no",
			"--dir", dir, "--save", "", "--logfile", filepath.Join(dir, "redis.log"),
		)
		if err != nil {
			t.Fatalf("real redis-server needed: %v (run `make test`, which installs one)", err)
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(p))
		if waitReady(func(ctx context.Context) error {
			c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1,
				TLSConfig: &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}})
			defer c.Close()
			return c.Ping(ctx).Err()
		}, 10*time.Second) {
			s.Addr = addr
			t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
			return s
		}
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}
	log, _ := os.ReadFile(filepath.Join(dir, "redis.log"))
	t.Fatalf("redis-server with TLS did not answer on loopback; its log:\n%s", log)
	return nil
}

// WriteCA makes a self-signed CA, writes its certificate as PEM to path and
// returns it with its key: for a server's CA, or for a CA that signed
// nothing (a wrong FACESYNC_REDIS_CA_FILE).
func WriteCA(path string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "facesync test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, err
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		return nil, nil, err
	}
	return cert, key, nil
}

func writeServerCert(dir string, ca *x509.Certificate, caKey *ecdsa.PrivateKey) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: "facesync test redis"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:     []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return err
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "server.pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "server-key.pem"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	return n
}
