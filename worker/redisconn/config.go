// Package redisconn turns FACESYNC_REDIS_URL and FACESYNC_REDIS_CA_FILE into
// the one Redis connection a facesync process shares: a go-redis client
// for a single node (redis://, rediss://) or one that follows the master
// through Redis Sentinel (redis-sentinel://), and the same settings in the
// form asynq takes. It also holds what Redis high availability asks of its
// callers: waiting for a replica before an enqueue is reported, telling a
// failover's errors from others, and a readiness check that wants a
// writable master.
//
// Redis Cluster is refused: asynq's Lua scripts build key names from their
// arguments, which Cluster cannot route.
package redisconn

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

// Names of the environment variables this package reads, for messages.
const (
	EnvURL    = "FACESYNC_REDIS_URL"
	EnvCAFile = "FACESYNC_REDIS_CA_FILE"
)

// DefaultURL is FACESYNC_REDIS_URL's default.
const DefaultURL = "redis://127.0.0.1:6379/0"

// Mode is how a Config reaches Redis.
type Mode int

// The modes, one for each accepted URL scheme.
const (
	Single   Mode = iota // redis:// or rediss://: one node
	Sentinel             // redis-sentinel://: the master that Sentinel names
)

// Config is one parsed FACESYNC_REDIS_URL. Every Redis client of a process
// is built from it, so that all of them reach the same database the same
// way.
type Config struct {
	Mode Mode
	// Addrs is the node's host:port (Single) or the sentinels' (Sentinel).
	Addrs []string
	// MasterName is the name the sentinels monitor (Sentinel only).
	MasterName string
	// Username and Password authenticate to the node, or in Sentinel mode
	// to the master and the replicas.
	Username string
	Password string
	// SentinelPassword authenticates to the sentinels (sentinel_password=).
	SentinelPassword string
	// DB is the logical database selected on every connection.
	DB int
	// TLS is set for rediss:// and nil otherwise.
	TLS *tls.Config
	// PoolSize is the go-redis pool size; 0 keeps go-redis's default of 10
	// per CPU. A client shared with asynq needs room for every task in
	// flight (see NewClient).
	PoolSize int

	caFile string // for messages
}

// ConfigError is a bad FACESYNC_REDIS_URL or FACESYNC_REDIS_CA_FILE. Its
// message names the variable and never holds a password.
type ConfigError struct {
	Var string // EnvURL or EnvCAFile
	Msg string
}

func (e *ConfigError) Error() string { return e.Var + ": " + e.Msg }

func urlErr(format string, args ...any) error {
	return &ConfigError{Var: EnvURL, Msg: fmt.Sprintf(format, args...)}
}

const want = "want redis://[[user]:password@]host:port/db, rediss://... (TLS) or redis-sentinel://[:password@]host1:26379,host2:26379/db?master=NAME"

// Parse reads FACESYNC_REDIS_URL (rawURL; empty means DefaultURL) and
// FACESYNC_REDIS_CA_FILE (caFile; empty means the system's roots). The CA
// file is read here, so a missing or unreadable one stops the process at
// start. Errors are *ConfigError.
func Parse(rawURL, caFile string) (*Config, error) {
	if rawURL == "" {
		rawURL = DefaultURL
	}
	scheme, rest, ok := strings.Cut(rawURL, "://")
	if !ok {
		return nil, urlErr("no scheme; %s", want)
	}
	var c *Config
	var err error
	switch strings.ToLower(scheme) {
	case "redis", "rediss":
		c, err = parseSingle(rest)
		if err == nil && strings.EqualFold(scheme, "rediss") {
			host, _, _ := net.SplitHostPort(c.Addrs[0])
			c.TLS, err = tlsConfig(host, caFile)
		}
	case "redis-sentinel":
		c, err = parseSentinel(rest)
	case "redis-cluster", "rediss-cluster":
		return nil, urlErr("Redis Cluster is not supported: asynq's scripts need all their keys on one node; run Redis with Sentinel (redis-sentinel://) instead")
	default:
		return nil, urlErr("unknown scheme %q; %s", scheme, want)
	}
	if err != nil {
		return nil, err
	}
	c.caFile = caFile
	if c.TLS == nil && caFile != "" {
		return nil, &ConfigError{Var: EnvCAFile, Msg: "set, but " + EnvURL + " is not rediss://, so no TLS would be used"}
	}
	return c, nil
}

// authority splits "[userinfo@]hosts[/path][?query]".
func authority(rest string) (user, pass, hosts, path string, q url.Values, err error) {
	rest, rawQuery, _ := strings.Cut(rest, "?")
	if i := strings.LastIndex(rest, "@"); i >= 0 {
		// The last @ ends the userinfo: a password may hold an unescaped @,
		// a host never does.
		info := rest[:i]
		rest = rest[i+1:]
		u, p, _ := strings.Cut(info, ":")
		if user, err = url.PathUnescape(u); err != nil {
			return "", "", "", "", nil, urlErr("user name is not valid percent-encoding")
		}
		if pass, err = url.PathUnescape(p); err != nil {
			return "", "", "", "", nil, urlErr("password is not valid percent-encoding")
		}
	}
	hosts, path, _ = strings.Cut(rest, "/")
	if q, err = url.ParseQuery(rawQuery); err != nil {
		// The query may hold sentinel_password: say nothing of its text.
		return "", "", "", "", nil, urlErr("query is not valid (want key=value&...)")
	}
	return user, pass, hosts, path, q, nil
}

func parseDB(path string) (int, error) {
	path = strings.TrimSuffix(path, "/")
	if path == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(path)
	if err != nil || n < 0 {
		return 0, urlErr("database %q is not a number 0 or more", path)
	}
	return n, nil
}

// hostPort checks one host[:port], adding the default port.
func hostPort(h string, defPort string) (string, error) {
	if h == "" {
		return "", urlErr("no host; %s", want)
	}
	host, port, err := net.SplitHostPort(h)
	if err != nil {
		// No port (or a bare IPv6 address in brackets).
		host, port = strings.TrimSuffix(strings.TrimPrefix(h, "["), "]"), defPort
		if strings.ContainsAny(host, "[]") {
			return "", urlErr("host %q is not valid", h)
		}
	}
	if host == "" {
		return "", urlErr("host %q has no name", h)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return "", urlErr("port %q of %q is not a port number", port, h)
	}
	return net.JoinHostPort(host, port), nil
}

func unknownParams(q url.Values, allowed ...string) error {
	for k := range q {
		ok := false
		for _, a := range allowed {
			ok = ok || k == a
		}
		if !ok {
			if len(allowed) == 0 {
				return urlErr("unknown parameter %q (this form takes none)", k)
			}
			return urlErr("unknown parameter %q (want %s)", k, strings.Join(allowed, ", "))
		}
	}
	return nil
}

func parseSingle(rest string) (*Config, error) {
	user, pass, hosts, path, q, err := authority(rest)
	if err != nil {
		return nil, err
	}
	if strings.Contains(hosts, ",") {
		return nil, urlErr("several hosts in a redis:// URL; for Sentinel use redis-sentinel://host1:26379,host2:26379/db?master=NAME")
	}
	addr, err := hostPort(hosts, "6379")
	if err != nil {
		return nil, err
	}
	db, err := parseDB(path)
	if err != nil {
		return nil, err
	}
	if err := unknownParams(q); err != nil {
		return nil, err
	}
	return &Config{Mode: Single, Addrs: []string{addr}, Username: user, Password: pass, DB: db}, nil
}

func parseSentinel(rest string) (*Config, error) {
	user, pass, hosts, path, q, err := authority(rest)
	if err != nil {
		return nil, err
	}
	c := &Config{Mode: Sentinel, Username: user, Password: pass}
	for _, h := range strings.Split(hosts, ",") {
		addr, err := hostPort(strings.TrimSpace(h), "26379")
		if err != nil {
			return nil, err
		}
		c.Addrs = append(c.Addrs, addr)
	}
	if c.DB, err = parseDB(path); err != nil {
		return nil, err
	}
	if err := unknownParams(q, "master", "sentinel_password"); err != nil {
		return nil, err
	}
	if c.MasterName = q.Get("master"); c.MasterName == "" {
		return nil, urlErr("redis-sentinel:// needs ?master=NAME, the name the sentinels monitor")
	}
	c.SentinelPassword = q.Get("sentinel_password")
	return c, nil
}

func tlsConfig(host, caFile string) (*tls.Config, error) {
	// ServerName is what the server's certificate must name; crypto/tls
	// refuses to dial without it.
	t := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: host}
	if caFile == "" {
		return t, nil // system roots
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, &ConfigError{Var: EnvCAFile, Msg: fmt.Sprintf("cannot read %s: %v", caFile, err)}
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, &ConfigError{Var: EnvCAFile, Msg: fmt.Sprintf("%s holds no PEM certificate", caFile)}
	}
	t.RootCAs = pool
	return t, nil
}

// Sentinel reports whether the Config reaches Redis through Sentinel, where
// an acknowledged write must wait for a replica (WaitReplica).
func (c *Config) Sentinel() bool { return c.Mode == Sentinel }

// String describes where the Config connects, without any password.
func (c *Config) String() string {
	var b strings.Builder
	switch {
	case c.Mode == Sentinel:
		fmt.Fprintf(&b, "redis-sentinel://%s/%d?master=%s", strings.Join(c.Addrs, ","), c.DB, c.MasterName)
	case c.TLS != nil:
		fmt.Fprintf(&b, "rediss://%s/%d", c.Addrs[0], c.DB)
	default:
		fmt.Fprintf(&b, "redis://%s/%d", c.Addrs[0], c.DB)
	}
	return b.String()
}

// NewClient returns the go-redis client for the Config: redis.NewClient for
// one node, redis.NewFailoverClient through Sentinel (which asks the
// sentinels for the master on every new connection and drops connections
// to the old master when Sentinel announces a switch). Both are
// *redis.Client.
//
// One client may serve the whole process, asynq included, through
// asynq.NewServerFromRedisClient, NewClientFromRedisClient and
// NewInspectorFromRedisClient. asynq then never closes it (their Close
// returns an error saying so, which the caller ignores); the caller closes
// it after every asynq server has shut down. asynq v0.26 issues no blocking
// command (it polls; its cancelation PubSub has a connection of its own),
// but every task in flight may send a command at the same moment, its
// handler's or asynq's own when it finishes. So set PoolSize to at least
// all servers' concurrency plus a margin for the ticket cache and asynq's
// housekeeping (heartbeat, forwarder, recoverer, janitor), or commands wait
// for a connection and fail after the pool timeout (4s).
func (c *Config) NewClient() *redis.Client {
	if c.Mode == Sentinel {
		return redis.NewFailoverClient(&redis.FailoverOptions{
			MasterName:       c.MasterName,
			SentinelAddrs:    c.Addrs,
			SentinelPassword: c.SentinelPassword,
			Username:         c.Username,
			Password:         c.Password,
			DB:               c.DB,
			PoolSize:         c.PoolSize,
			TLSConfig:        c.TLS,
		})
	}
	return redis.NewClient(&redis.Options{
		Addr:      c.Addrs[0],
		Username:  c.Username,
		Password:  c.Password,
		DB:        c.DB,
		PoolSize:  c.PoolSize,
		TLSConfig: c.TLS,
	})
}

// AsynqConnOpt returns the same settings as asynq's connection option, for
// asynq servers, clients or inspectors that should own a pool of their own
// (asynq.NewServer(opt, ...) closes it at Shutdown).
func (c *Config) AsynqConnOpt() asynq.RedisConnOpt {
	if c.Mode == Sentinel {
		return asynq.RedisFailoverClientOpt{
			MasterName:       c.MasterName,
			SentinelAddrs:    c.Addrs,
			SentinelPassword: c.SentinelPassword,
			Username:         c.Username,
			Password:         c.Password,
			DB:               c.DB,
			PoolSize:         c.PoolSize,
			TLSConfig:        c.TLS,
		}
	}
	return asynq.RedisClientOpt{
		Addr:      c.Addrs[0],
		Username:  c.Username,
		Password:  c.Password,
		DB:        c.DB,
		PoolSize:  c.PoolSize,
		TLSConfig: c.TLS,
	}
}
