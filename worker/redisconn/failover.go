package redisconn

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

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
// command, a network timeout, no sentinel answering, or ErrNotReplicated.
// Such an error passes once a master is reachable again: retry it, never
// record it as an outcome. A context's own cancellation or deadline is not
// one.
func IsFailover(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	if errors.Is(err, ErrNotReplicated) ||
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

// OK ends a burst, if one is open, when a Redis call succeeds.
func (b *BurstLog) OK() {
	if !b.open.Load() {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.start.IsZero() {
		b.endLocked(b.now(), "redis answers again")
	}
}

func (b *BurstLog) endLocked(now time.Time, msg string) {
	b.log.Info(msg, zap.Int("errors", b.errors), zap.Duration("burst", now.Sub(b.start)))
	b.start, b.last, b.errors = time.Time{}, time.Time{}, 0
	b.open.Store(false)
}
