package redisconn

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Confirmer confirms writes in Sentinel mode. WAIT 1 alone is not enough:
// during a SENTINEL FAILOVER the sentinels name the old master for about a
// second after they promoted a replica, the old master still accepts
// writes, and its other replica acknowledges them, until Sentinel points
// that replica at the new master and the writes are gone (measured: the
// old master answers WAIT 1 with 1 between 0.3 and 1.2 s after the
// command). So Confirm waits for as many replicas as the sentinels count
// for the master: every replica not down whose link to its master is up,
// the one being promoted included. A replica that left the old master to
// become master then makes the count unreachable there, and the write is
// reported as not replicated instead of lost.
//
// The price: when a replica dies, writes are not confirmed until the
// sentinels mark it down (down-after-milliseconds). It is safe for
// concurrent use.
type Confirmer struct {
	rdb       Conner
	master    string
	sentinels []*redis.SentinelClient

	mu sync.Mutex
	n  int
	at time.Time
}

// confirmCache is how long a replica count is reused. A stale count errs
// high (safe) except right after a replica was marked down.
const confirmCache = 250 * time.Millisecond

// NewConfirmer returns a Confirmer for writes made through rdb (the
// Config's client). The Config must be Sentinel mode. Close releases its
// connections to the sentinels.
func (c *Config) NewConfirmer(rdb Conner) *Confirmer {
	k := &Confirmer{rdb: rdb, master: c.MasterName}
	for _, a := range c.Addrs {
		k.sentinels = append(k.sentinels, redis.NewSentinelClient(&redis.Options{
			Addr: a, Password: c.SentinelPassword, TLSConfig: c.TLS, MaxRetries: -1,
			DialTimeout: time.Second, ReadTimeout: time.Second, WriteTimeout: time.Second,
		}))
	}
	return k
}

// Close closes the Confirmer's sentinel connections.
func (k *Confirmer) Close() error {
	var errs []error
	for _, s := range k.sentinels {
		errs = append(errs, s.Close())
	}
	return errors.Join(errs...)
}

// Confirm is WaitReplica for the number of replicas the sentinels count
// (at least one): nil once they all hold every write the master had
// acknowledged, ErrLost when a key of mustExist is not on the master,
// ErrNotReplicated when they do not acknowledge within timeout.
func (k *Confirmer) Confirm(ctx context.Context, timeout time.Duration, mustExist ...string) error {
	n, err := k.replicas(ctx)
	if err != nil {
		return err
	}
	return waitReplicas(ctx, k.rdb, n, timeout, mustExist...)
}

// replicas is the largest count of live replicas any sentinel reports.
func (k *Confirmer) replicas(ctx context.Context) (int, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if !k.at.IsZero() && time.Since(k.at) < confirmCache {
		return k.n, nil
	}
	best, answered := 0, 0
	var last error
	for _, s := range k.sentinels {
		reps, err := s.Replicas(ctx, k.master).Result()
		if err != nil {
			last = err
			continue
		}
		answered++
		if n := countLive(reps); n > best {
			best = n
		}
	}
	if answered == 0 {
		return 0, fmt.Errorf("replica count: no sentinel answered: %w (%w)", ErrNotReplicated, last)
	}
	if best < 1 {
		best = 1
	}
	k.n, k.at = best, time.Now()
	return best, nil
}

// countLive counts the replicas of SENTINEL REPLICAS that are not down and
// whose link to the master is up. A replica being promoted keeps both
// until the failover ends: counted, on purpose.
func countLive(reps []map[string]string) int {
	n := 0
	for _, r := range reps {
		flags := r["flags"]
		if strings.Contains(flags, "s_down") || strings.Contains(flags, "o_down") || r["master-link-status"] != "ok" {
			continue
		}
		n++
	}
	return n
}
