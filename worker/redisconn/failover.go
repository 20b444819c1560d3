package redisconn

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hibiken/asynq"
	"go.uber.org/zap"
)

// failoverPrefixes are the replies of a Redis node while the master moves:
// a demoted master or a replica refuses writes (READONLY), a node still
// loading its data refuses everything (LOADING), a replica cut off from its
// master refuses reads (MASTERDOWN), and a blocked command (WAIT) is
// released when its master turns replica (UNBLOCKED).
var failoverPrefixes = []string{"READONLY ", "LOADING ", "MASTERDOWN ", "UNBLOCKED ", "NOREPLICAS "}

// IsFailover reports whether err is what Redis answers while a master is
// lost or moving: one of the replies above (also inside asynq's wrapped
// errors), a refused or reset connection, a connection closed under the
// command, a network timeout, no sentinel answering, ErrNotReplicated or
// ErrNotMaster.
// Such an error passes once a master is reachable again: retry it, never
// record it as an outcome. A context's own cancellation or deadline is not
// one, nor is a refused TLS certificate.
func IsFailover(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || certError(err) {
		return false
	}
	if errors.Is(err, ErrNotReplicated) || errors.Is(err, ErrNotMaster) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, net.ErrClosed) {
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	var op *net.OpError
	if errors.As(err, &op) {
		return true
	}
	// asynq and Lua keep the reply's text but not always its type: match
	// the prefix wherever the reply starts.
	s := err.Error()
	for _, p := range failoverPrefixes {
		if strings.HasPrefix(s, p) || strings.Contains(s, ": "+p) || strings.Contains(s, "-"+p) {
			return true
		}
	}
	return strings.Contains(s, "all sentinels specified in configuration are unreachable") ||
		strings.Contains(s, "connection pool timeout")
}

// certError reports a TLS certificate the client refuses: configuration,
// not a failover, however it is wrapped.
func certError(err error) bool {
	var verify *tls.CertificateVerificationError
	var unknown x509.UnknownAuthorityError
	var invalid x509.CertificateInvalidError
	var host x509.HostnameError
	return errors.As(err, &verify) || errors.As(err, &unknown) || errors.As(err, &invalid) || errors.As(err, &host)
}

// Transient is IsFailover under the name a retry decision reads better
// with.
func Transient(err error) bool { return IsFailover(err) }

// BurstLog logs Redis failover errors once per burst instead of once per
// task: the first error of a burst is logged, later ones are only counted,
// and the end of the burst (a success, or the next error after a quiet
// gap) is logged with the count. It is safe for concurrent use.
type BurstLog struct {
	log   *zap.Logger
	quiet time.Duration
	now   func() time.Time

	open   atomic.Bool // a burst is open: lets OK skip the lock in the usual case
	mu     sync.Mutex
	start  time.Time // zero: no burst
	last   time.Time
	errors int
}

// NewBurstLog returns a BurstLog writing to log; errors no more than quiet
// apart belong to one burst (10s if quiet is 0).
func NewBurstLog(log *zap.Logger, quiet time.Duration) *BurstLog {
	if quiet <= 0 {
		quiet = 10 * time.Second
	}
	return &BurstLog{log: log, quiet: quiet, now: time.Now}
}

// Error counts a failover error (callers pass only errors IsFailover
// accepts), logging it when it opens a burst.
func (b *BurstLog) Error(err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.now()
	if !b.start.IsZero() && now.Sub(b.last) > b.quiet {
		b.endLocked(now, "redis errors stopped")
	}
	if b.start.IsZero() {
		b.start = now
		b.open.Store(true)
		b.log.Warn("redis unavailable (failing over?); retrying, and counting further errors until it answers", zap.Error(err))
	}
	b.last = now
	b.errors++
}

// settle is how long a burst must have seen no error before a success
// ends it: while a failover settles, some calls already succeed (a replica
// answers, a duplicate needs no write) between others that still fail,
// and each of them ending and reopening the burst would log a pair of
// lines per task, the very noise the burst log is for.
const settle = 2 * time.Second

// OK ends a burst, if one is open and its last error is at least settle
// (or quiet, if shorter) old, when a Redis call succeeds.
func (b *BurstLog) OK() {
	if !b.open.Load() {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.now()
	if !b.start.IsZero() && now.Sub(b.last) >= min(settle, b.quiet) {
		b.endLocked(now, "redis answers again")
	}
}

func (b *BurstLog) endLocked(now time.Time, msg string) {
	b.log.Info(msg, zap.Int("errors", b.errors), zap.Duration("burst", now.Sub(b.start)))
	b.start, b.last, b.errors = time.Time{}, time.Time{}, 0
	b.open.Store(false)
}

// failoverText is IsFailover for a message that is only text: what asynq
// and go-redis hand their loggers.
func failoverText(s string) bool {
	for _, p := range failoverPrefixes {
		if strings.Contains(s, p) {
			return true
		}
	}
	for _, p := range []string{"connection refused", "connection reset", "broken pipe", "i/o timeout", "EOF",
		"all sentinels specified in configuration are unreachable", "failed to dial", "connection pool timeout"} {
		if strings.Contains(s, p) {
			return true
		}
	}
	return false
}

// AsynqLogger wraps asynq's logger so that its warnings and errors about a
// failover ("Dequeue error", "Could not mark task as complete ... Will retry
// syncing", one per task) join the burst instead of each making a line;
// everything else goes to next unchanged. Pass it as asynq.Config.Logger.
func (b *BurstLog) AsynqLogger(next asynq.Logger) asynq.Logger {
	return burstAsynq{next: next, b: b}
}

type burstAsynq struct {
	next asynq.Logger
	b    *BurstLog
}

func (l burstAsynq) Debug(args ...any) { l.next.Debug(args...) }
func (l burstAsynq) Info(args ...any)  { l.next.Info(args...) }
func (l burstAsynq) Warn(args ...any)  { l.route(l.next.Warn, args) }
func (l burstAsynq) Error(args ...any) { l.route(l.next.Error, args) }
func (l burstAsynq) Fatal(args ...any) { l.next.Fatal(args...) }

func (l burstAsynq) route(next func(...any), args []any) {
	msg := fmt.Sprint(args...)
	if failoverText(msg) {
		l.b.Error(errors.New(msg))
		return
	}
	next(args...)
}

// RedisPrintf is go-redis's logger interface (redis.SetLogger).
type RedisPrintf interface {
	Printf(ctx context.Context, format string, v ...any)
}

// RedisLogger wraps the logger given to redis.SetLogger the same way: its
// dial failures during a failover (one per pooled connection) join the
// burst.
func (b *BurstLog) RedisLogger(next RedisPrintf) RedisPrintf {
	return burstRedis{next: next, b: b}
}

type burstRedis struct {
	next RedisPrintf
	b    *BurstLog
}

func (l burstRedis) Printf(ctx context.Context, format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	if failoverText(msg) {
		l.b.Error(errors.New(msg))
		return
	}
	l.next.Printf(ctx, format, v...)
}
