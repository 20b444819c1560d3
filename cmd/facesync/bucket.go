package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/facesync/facesync/storage"
)

// lifecycleConfig is the evidence lifecycle the environment sets
// (FACESYNC_EVIDENCE_RETENTION, FACESYNC_S3_MULTIPART_CLEANUP,
// FACESYNC_S3_RECEIPT_PREFIX).
func (c *Config) lifecycleConfig() storage.LifecycleConfig {
	return storage.LifecycleConfig{
		RetentionDays: c.EvidenceRetention, MultipartCleanup: c.S3MultipartCleanup, ReceiptPrefix: c.S3ReceiptPrefix,
	}
}

// checkLifecycle checks the lifecycle settings, each refusal naming its
// variable (LoadConfig has read the values and the cleanup mode).
func (c *Config) checkLifecycle() error {
	if c.EvidenceRetention > storage.MaxRetentionDays {
		return &configError{"FACESYNC_EVIDENCE_RETENTION", fmt.Sprintf("%d days is more than %d", c.EvidenceRetention, storage.MaxRetentionDays)}
	}
	if err := storage.CheckReceiptPrefix(c.S3ReceiptPrefix, c.S3Prefix); err != nil {
		return &configError{"FACESYNC_S3_RECEIPT_PREFIX", strings.TrimPrefix(err.Error(), "storage: ")}
	}
	return nil
}

// retentionLocker is what checkRetentionLock reads of the S3 sink.
type retentionLocker interface {
	DefaultRetentionDays(ctx context.Context) (int, error)
}

// checkRetentionLock refuses to run a worker whose evidence would outlive
// FACESYNC_EVIDENCE_RETENTION under object lock: the longer of
// FACESYNC_S3_LOCK_DAYS and the bucket's default retention (one read of
// the bucket's object-lock configuration; CheckBucket's other reads are
// `bucket check`'s, not needed to start). Without a retention nothing
// conflicts and nothing is read.
func checkRetentionLock(ctx context.Context, c *Config, sink any) error {
	if c.EvidenceRetention == 0 {
		return nil
	}
	if err := storage.CheckRetentionLock(c.EvidenceRetention, c.S3LockDays); err != nil {
		return usageErr("%v", &configError{"FACESYNC_EVIDENCE_RETENTION", fmt.Sprintf(
			"FACESYNC_S3_LOCK_DAYS (%d) is longer than the evidence retention of %d days: expiry would be impossible", c.S3LockDays, c.EvidenceRetention)})
	}
	rl, ok := sink.(retentionLocker)
	if !ok {
		return nil // not a bucket: no object lock
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	days, err := rl.DefaultRetentionDays(ctx)
	if err != nil {
		return infraErr(fmt.Errorf("cannot check the bucket's default retention against FACESYNC_EVIDENCE_RETENTION: %v", err))
	}
	if storage.CheckRetentionLock(c.EvidenceRetention, days) != nil {
		return usageErr("%v", &configError{"FACESYNC_EVIDENCE_RETENTION", fmt.Sprintf(
			"the bucket's default object-lock retention (%d days) is longer than the evidence retention of %d days: expiry would be impossible", days, c.EvidenceRetention)})
	}
	return nil
}

// runBucket runs `facesync bucket setup` and `facesync bucket check`.
func (m *Main) runBucket(ctx context.Context, args []string) error {
	if len(args) == 0 || (args[0] != "setup" && args[0] != "check") {
		return usageErr("want: facesync bucket setup | facesync bucket check")
	}
	if err := m.parse(m.flags("bucket "+args[0]), args[1:]); err != nil {
		return err
	}
	c, sink, err := m.configSink(ctx)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if args[0] == "setup" {
		rep, err := sink.SetupLifecycle(ctx, c.lifecycleConfig())
		if err != nil {
			return infraErr(err)
		}
		fmt.Fprint(m.Stdout, rep.String())
		if !rep.OK() {
			var why []string
			for _, p := range rep.Refused {
				why = append(why, p.String())
			}
			for _, id := range rep.LostForeign {
				why = append(why, "the bucket's rule "+id+" was lost")
			}
			return noErr("lifecycle configuration incomplete: %s", strings.Join(why, "; "))
		}
		return nil
	}
	rep, err := sink.CheckBucket(ctx, c.lifecycleConfig())
	if err != nil {
		return infraErr(err)
	}
	fmt.Fprint(m.Stdout, rep.String())
	if !rep.OK() {
		return noErr("%s", strings.Join(rep.Problems, "; "))
	}
	return nil
}
