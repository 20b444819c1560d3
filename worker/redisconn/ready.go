package redisconn

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// ErrNotMaster is returned by Ready when the node that answered is a
// replica: writes would fail until the failover ends.
var ErrNotMaster = errors.New("redis answered as a replica, not a writable master")

// Ready checks that a writable master answers through rdb, for /readyz:
// nil once it does, an error while no master is reachable (during a
// failover, or with a plain URL pointing at a replica). It asks ROLE; where
// a managed service refuses ROLE it writes a small expiring key instead.
func Ready(ctx context.Context, rdb redis.UniversalClient) error {
	role, err := rdb.Do(ctx, "ROLE").Slice()
	if err == nil {
		if len(role) > 0 && role[0] == "master" {
			return nil
		}
		return ErrNotMaster
	}
	if IsFailover(err) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	// ROLE refused (renamed, or not allowed for this user): a write tells
	// a master from a replica just as well.
	if err := rdb.Set(ctx, "facesync:ready-probe", 1, 10*time.Second).Err(); err != nil {
		if IsFailover(err) {
			return ErrNotMaster
		}
		return err
	}
	return nil
}

// Connect builds the Config's client and checks, within timeout, that a
// writable master answers. Its error is one line fit for the command's
// output: it names FACESYNC_REDIS_URL, says where it tried (without
// passwords) and, when the server's certificate is not trusted, names
// FACESYNC_REDIS_CA_FILE. The caller closes the client.
func (c *Config) Connect(ctx context.Context, timeout time.Duration) (*redis.Client, error) {
	rdb := c.NewClient()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := Ready(ctx, rdb); err != nil {
		_ = rdb.Close()
		return nil, c.describe(err)
	}
	return rdb, nil
}

// describe turns a connection error into the line Connect returns.
func (c *Config) describe(err error) error {
	var unknown x509.UnknownAuthorityError
	var invalid x509.CertificateInvalidError
	var host x509.HostnameError
	var verify *tls.CertificateVerificationError
	switch {
	case errors.Is(err, ErrNotMaster):
		return fmt.Errorf("redis at %s (%s): %w", c, EnvURL, err)
	case errors.As(err, &unknown), errors.As(err, &verify) && errors.As(verify.Err, &unknown):
		return fmt.Errorf("redis at %s: its TLS certificate is not signed by a CA in %s: %w", c, c.caSource(), err)
	case errors.As(err, &host):
		return fmt.Errorf("redis at %s: its TLS certificate does not name the host of %s: %w", c, EnvURL, err)
	case errors.As(err, &invalid):
		return fmt.Errorf("redis at %s: its TLS certificate is not valid: %w", c, err)
	}
	return fmt.Errorf("redis at %s unreachable (%s): %w", c, EnvURL, err)
}

func (c *Config) caSource() string {
	if c.caFile != "" {
		return EnvCAFile + " (" + c.caFile + ")"
	}
	return "the system roots (set " + EnvCAFile + ")"
}
