package ticketcachetest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"os"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func TestSentinelsFailover(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := StartSentinels(t, SentinelOptions{Password: "pw", SentinelPassword: "spw"})
	if got, err := s.MasterAddr(ctx); err != nil || got != s.Nodes[0].Addr {
		t.Fatalf("MasterAddr = %q, %v; want the first node %s", got, err, s.Nodes[0].Addr)
	}
	old, err := s.Failover(ctx)
	if err != nil {
		t.Fatal(err)
	}
	nm, err := s.WaitNewMaster(ctx, old, 20*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if nm != s.Nodes[1].Addr {
		t.Fatalf("new master %s, want the replica %s", nm, s.Nodes[1].Addr)
	}
	// Every address the sentinels hand out is on loopback.
	sc := redis.NewSentinelClient(&redis.Options{Addr: s.SentinelAddrs[1], Password: "spw"})
	defer sc.Close()
	others, err := sc.Sentinels(ctx, s.MasterName).Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range others {
		if o["ip"] != "127.0.0.1" {
			t.Errorf("sentinel announces %v, want 127.0.0.1", o)
		}
	}
}

func TestTLSServer(t *testing.T) {
	t.Parallel()
	srv := StartTLSServer(t)
	pem, err := os.ReadFile(srv.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatal("CAFile holds no PEM certificate")
	}
	for _, name := range []string{"127.0.0.1", "localhost"} {
		c := redis.NewClient(&redis.Options{Addr: srv.Addr, TLSConfig: &tls.Config{RootCAs: pool, ServerName: name}})
		if err := c.Ping(context.Background()).Err(); err != nil {
			t.Errorf("PING over TLS as %s: %v", name, err)
		}
		_ = c.Close()
	}
	plain := redis.NewClient(&redis.Options{Addr: srv.Addr, MaxRetries: -1})
	defer plain.Close()
	if err := plain.Ping(context.Background()).Err(); err == nil {
		t.Error("PING without TLS answered; the server must speak TLS only")
	}
}
