package redisconn_test

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/hibiken/asynq"

	"github.com/facesync/facesync/ticketcache/ticketcachetest"
	"github.com/facesync/facesync/worker/redisconn"
)

// secret appears as every password in the table; no message may hold it.
const secret = "s3cr3t-Pw"

func TestParse(t *testing.T) {
	t.Parallel()
	type want struct {
		mode     redisconn.Mode
		addrs    []string
		master   string
		user     string
		pass     string
		sentPass string
		db       int
		tls      bool
	}
	cases := []struct {
		url string
		w   want
	}{
		{"", want{addrs: []string{"127.0.0.1:6379"}}},
		{"redis://127.0.0.1:6379/0", want{addrs: []string{"127.0.0.1:6379"}}},
		{"redis://redis", want{addrs: []string{"redis:6379"}}},
		{"redis://redis:7000/", want{addrs: []string{"redis:7000"}}},
		{"redis://:" + secret + "@redis:6379/3", want{addrs: []string{"redis:6379"}, pass: secret, db: 3}},
		{"redis://app:" + secret + "@redis/2", want{addrs: []string{"redis:6379"}, user: "app", pass: secret, db: 2}},
		{"redis://:p%40ss%3Aw@redis/1", want{addrs: []string{"redis:6379"}, pass: "p@ss:w", db: 1}},
		{"redis://:a@b@redis/1", want{addrs: []string{"redis:6379"}, pass: "a@b", db: 1}},
		{"redis://[::1]:6380/4", want{addrs: []string{"[::1]:6380"}, db: 4}},
		{"REDIS://redis/0", want{addrs: []string{"redis:6379"}}},
		{"rediss://cache.example.com:6380/1", want{addrs: []string{"cache.example.com:6380"}, db: 1, tls: true}},
		{"rediss://:" + secret + "@cache.example.com/0", want{addrs: []string{"cache.example.com:6379"}, pass: secret, tls: true}},
		{"redis-sentinel://s1:26379,s2:26379,s3/5?master=mymaster",
			want{mode: redisconn.Sentinel, addrs: []string{"s1:26379", "s2:26379", "s3:26379"}, master: "mymaster", db: 5}},
		{"redis-sentinel://:" + secret + "@s1:26379/0?master=m&sentinel_password=" + secret + "2",
			want{mode: redisconn.Sentinel, addrs: []string{"s1:26379"}, master: "m", pass: secret, sentPass: secret + "2"}},
		{"redis-sentinel://s1?master=m",
			want{mode: redisconn.Sentinel, addrs: []string{"s1:26379"}, master: "m"}},
	}
	for _, tc := range cases {
		c, err := redisconn.Parse(tc.url, "")
		if err != nil {
			t.Errorf("Parse(%q) error %v", tc.url, err)
			continue
		}
		got := want{mode: c.Mode, addrs: c.Addrs, master: c.MasterName, user: c.Username, pass: c.Password,
			sentPass: c.SentinelPassword, db: c.DB, tls: c.TLS != nil}
		if !reflect.DeepEqual(got, tc.w) {
			t.Errorf("Parse(%q) = %+v, want %+v", tc.url, got, tc.w)
		}
		if c.Sentinel() != (tc.w.mode == redisconn.Sentinel) {
			t.Errorf("Parse(%q).Sentinel() = %v", tc.url, c.Sentinel())
		}
		if strings.Contains(c.String(), secret) {
			t.Errorf("Parse(%q).String() = %q holds the password", tc.url, c.String())
		}
	}
}

func TestParseErrors(t *testing.T) {
	t.Parallel()
	cases := []struct {
		url  string
		want string // in the message
	}{
		{"127.0.0.1:6379", "no scheme"},
		{"http://:" + secret + "@redis/0", `unknown scheme "http"`},
		{"redis-cluster://:" + secret + "@a:7000,b:7000", "Redis Cluster is not supported"},
		{"redis://:" + secret + "@/0", "no host"},
		{"redis://:" + secret + "@redis:port/0", `port "port"`},
		{"redis://:" + secret + "@redis:70000/0", "not a port number"},
		{"redis://:" + secret + "@redis/x", `database "x"`},
		{"redis://:" + secret + "@redis/-1", `database "-1"`},
		{"redis://:" + secret + "@a,b/0", "for Sentinel use redis-sentinel://"},
		{"redis://:" + secret + "@redis/0?dial_timeout=1s", `unknown parameter "dial_timeout"`},
		{"redis://:%zz" + secret + "@redis/0", "password is not valid percent-encoding"},
		{"redis-sentinel://:" + secret + "@s1:26379/0", "needs ?master=NAME"},
		{"redis-sentinel://:" + secret + "@s1:26379/0?master=", "needs ?master=NAME"},
		{"redis-sentinel://:" + secret + "@s1:26379,/0?master=m", "no host"},
		{"redis-sentinel://s1/0?master=m&sentinel_password=%zz" + secret, "query is not valid"},
		{"redis-sentinel://s1/0?master=m&sentinel_pass=" + secret, `unknown parameter "sentinel_pass"`},
		{"redis-sentinel://s1/db?master=m&sentinel_password=" + secret, `database "db"`},
	}
	for _, tc := range cases {
		_, err := redisconn.Parse(tc.url, "")
		if err == nil {
			t.Errorf("Parse(%q) = nil error, want %q", tc.url, tc.want)
			continue
		}
		msg := err.Error()
		var ce *redisconn.ConfigError
		if !errors.As(err, &ce) || ce.Var != redisconn.EnvURL || !strings.HasPrefix(msg, "FACESYNC_REDIS_URL: ") {
			t.Errorf("Parse(%q) error %q does not name FACESYNC_REDIS_URL", tc.url, msg)
		}
		if !strings.Contains(msg, tc.want) {
			t.Errorf("Parse(%q) error %q, want it to say %q", tc.url, msg, tc.want)
		}
		if strings.Contains(msg, secret) {
			t.Errorf("Parse(%q) error %q holds the password", tc.url, msg)
		}
		if strings.Contains(msg, "\n") {
			t.Errorf("Parse(%q) error is not one line: %q", tc.url, msg)
		}
	}
}

func TestParseCluster(t *testing.T) {
	t.Parallel()
	_, err := redisconn.Parse("redis-cluster://a:7000,b:7000/0", "")
	if err == nil || !strings.Contains(err.Error(), "asynq") || !strings.Contains(err.Error(), "redis-sentinel://") {
		t.Fatalf("Parse(redis-cluster://) error %v, want one that names asynq and points to redis-sentinel://", err)
	}
}

func TestParseCAFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	good := filepath.Join(dir, "ca.pem")
	if _, _, err := ticketcachetest.WriteCA(good); err != nil {
		t.Fatal(err)
	}
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	unreadable := filepath.Join(dir, "dir.pem")
	if err := os.Mkdir(unreadable, 0o700); err != nil {
		t.Fatal(err)
	}

	c, err := redisconn.Parse("rediss://:"+secret+"@cache:6380/0", good)
	if err != nil {
		t.Fatalf("Parse with a good CA file: %v", err)
	}
	if c.TLS == nil || c.TLS.RootCAs == nil || c.TLS.ServerName != "cache" {
		t.Fatalf("Parse with a CA file: TLS %+v, want RootCAs set and ServerName cache", c.TLS)
	}
	if c, err := redisconn.Parse("rediss://cache/0", ""); err != nil || c.TLS.RootCAs != nil {
		t.Fatalf("Parse without a CA file: %v, RootCAs %v; want the system roots (nil)", err, c.TLS.RootCAs)
	}

	for _, tc := range []struct {
		url, file, want string
	}{
		{"rediss://:" + secret + "@cache/0", filepath.Join(dir, "missing.pem"), "no such file"},
		{"rediss://:" + secret + "@cache/0", notPEM, "holds no PEM certificate"},
		{"rediss://:" + secret + "@cache/0", unreadable, "cannot read"},
		{"redis://:" + secret + "@cache/0", good, "is not rediss://"},
	} {
		_, err := redisconn.Parse(tc.url, tc.file)
		var ce *redisconn.ConfigError
		if err == nil || !errors.As(err, &ce) || ce.Var != redisconn.EnvCAFile ||
			!strings.HasPrefix(err.Error(), "FACESYNC_REDIS_CA_FILE: ") || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Parse(%q, %q) error %v, want one naming FACESYNC_REDIS_CA_FILE and saying %q", tc.url, tc.file, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), secret) {
			t.Errorf("Parse error %q holds the password", err)
		}
	}
}

// The go-redis client and the asynq option carry the same settings.
func TestAsynqConnOpt(t *testing.T) {
	t.Parallel()
	c, err := redisconn.Parse("redis-sentinel://:"+secret+"@s1:26379,s2:26380/7?master=m&sentinel_password=sp", "")
	if err != nil {
		t.Fatal(err)
	}
	c.PoolSize = 64
	got, ok := c.AsynqConnOpt().(asynq.RedisFailoverClientOpt)
	if !ok {
		t.Fatalf("AsynqConnOpt() = %T, want asynq.RedisFailoverClientOpt", c.AsynqConnOpt())
	}
	want := asynq.RedisFailoverClientOpt{MasterName: "m", SentinelAddrs: []string{"s1:26379", "s2:26380"},
		SentinelPassword: "sp", Password: secret, DB: 7, PoolSize: 64}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("AsynqConnOpt() = %+v, want %+v", got, want)
	}
	c, err = redisconn.Parse("rediss://u:"+secret+"@cache:6380/2", "")
	if err != nil {
		t.Fatal(err)
	}
	single, ok := c.AsynqConnOpt().(asynq.RedisClientOpt)
	if !ok || single.Addr != "cache:6380" || single.Username != "u" || single.Password != secret || single.DB != 2 || single.TLSConfig != c.TLS {
		t.Errorf("AsynqConnOpt() = %+v", c.AsynqConnOpt())
	}
	rdb := c.NewClient()
	defer rdb.Close()
	if o := rdb.Options(); o.Addr != "cache:6380" || o.DB != 2 || o.Username != "u" || o.Password != secret || o.TLSConfig != c.TLS {
		t.Errorf("NewClient options = %+v", o)
	}
}
