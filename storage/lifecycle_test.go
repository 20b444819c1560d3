package storage_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go/middleware"

	"github.com/facesync/facesync/storage"
	"github.com/facesync/facesync/storage/storagetest"
)

func TestLifecycleConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		lc     storage.LifecycleConfig
		prefix string
		ok     bool
	}{
		{storage.LifecycleConfig{}, "", true},
		{storage.LifecycleConfig{RetentionDays: 30, MultipartCleanup: "server", ReceiptPrefix: "audit/"}, "evidence/", true},
		{storage.LifecycleConfig{RetentionDays: -1}, "", false},
		{storage.LifecycleConfig{RetentionDays: storage.MaxRetentionDays + 1}, "", false},
		{storage.LifecycleConfig{MultipartCleanup: "never"}, "", false},
		{storage.LifecycleConfig{ReceiptPrefix: "evidence/receipts/"}, "evidence/", false},
		{storage.LifecycleConfig{ReceiptPrefix: "data/"}, "data/evidence/", false},
		{storage.LifecycleConfig{ReceiptPrefix: "receipts"}, "", false},
		{storage.LifecycleConfig{ReceiptPrefix: "/receipts/"}, "", false},
	} {
		lc := tc.lc
		err := lc.Validate(tc.prefix)
		if (err == nil) != tc.ok {
			t.Errorf("%+v.Validate(%q) = %v, want ok %v", tc.lc, tc.prefix, err, tc.ok)
		}
		if err == nil && (lc.MultipartCleanup == "" || lc.ReceiptPrefix == "") {
			t.Errorf("%+v.Validate(%q) left defaults unset: %+v", tc.lc, tc.prefix, lc)
		}
	}
}

func TestCheckRetentionLock(t *testing.T) {
	for _, tc := range []struct {
		retention, lock int
		ok              bool
	}{
		{0, 0, true}, {0, 400, true}, {30, 0, true}, {30, 30, true}, {30, 31, false}, {1, 36500, false},
	} {
		if err := storage.CheckRetentionLock(tc.retention, tc.lock); (err == nil) != tc.ok {
			t.Errorf("CheckRetentionLock(%d, %d) = %v, want ok %v", tc.retention, tc.lock, err, tc.ok)
		}
	}
}

// TestLifecycleVersitygw: versitygw answers NotImplemented to lifecycle
// and default-encryption reads. The check lists the lifecycle as a problem
// ("not supported by the server"), not as an error, and reports the
// encryption as unsupported without failing on it; setup refuses every
// facesync rule.
func TestLifecycleVersitygw(t *testing.T) {
	t.Parallel()
	srv := storagetest.StartServer(t)
	ctx := testCtx(t)
	sink := newSink(t, srv.Client(), storage.Config{Bucket: srv.Bucket})
	lc := storage.LifecycleConfig{MultipartCleanup: storage.MultipartCleanupServer}
	rep, err := sink.CheckBucket(ctx, lc)
	if err != nil {
		t.Fatalf("CheckBucket: %v", err)
	}
	t.Logf("bucket check:\n%v", rep)
	if rep.OK() || rep.LifecycleSupported || len(rep.Problems) != 1 || !strings.Contains(rep.Problems[0], "not supported by the server") {
		t.Errorf("CheckBucket problems = %q, want one: lifecycle not supported by the server", rep.Problems)
	}
	if rep.Encryption != "not supported by the server" {
		t.Errorf("Encryption = %q, want not supported by the server", rep.Encryption)
	}
	if rep.Region != storagetest.Region || rep.Versioning != "off" || rep.ObjectLock != "off" {
		t.Errorf("region, versioning, object lock = %q, %q, %q; want %s, off, off", rep.Region, rep.Versioning, rep.ObjectLock, storagetest.Region)
	}

	setup, err := sink.SetupLifecycle(ctx, storage.LifecycleConfig{RetentionDays: 30})
	if err != nil {
		t.Fatalf("SetupLifecycle: %v", err)
	}
	if setup.OK() || !setup.Unsupported || len(setup.Refused) != 2 {
		t.Errorf("SetupLifecycle = %+v, want both rules refused as unsupported", setup)
	}

	// FACESYNC_S3_LOCK_DAYS outliving the evidence retention.
	lockDays := newSink(t, srv.Client(), storage.Config{Bucket: srv.Bucket, LockMode: storage.LockGovernance, LockDays: 60})
	rep, err = lockDays.CheckBucket(ctx, storage.LifecycleConfig{RetentionDays: 45, MultipartCleanup: storage.MultipartCleanupServer})
	if err != nil || !hasProblem(rep, "FACESYNC_S3_LOCK_DAYS keeps evidence 60 days, longer than FACESYNC_EVIDENCE_RETENTION (45 days)") {
		t.Errorf("CheckBucket(lock days 60, retention 45) = %v, %v; want the lock problem", rep, err)
	}

	// Object lock with a default retention that outlives the evidence
	// retention, on a versioned bucket.
	locked := srv.NewBucket(t, true)
	if _, err := srv.Client().PutObjectLockConfiguration(ctx, &s3.PutObjectLockConfigurationInput{
		Bucket: &locked,
		ObjectLockConfiguration: &types.ObjectLockConfiguration{
			ObjectLockEnabled: types.ObjectLockEnabledEnabled,
			Rule:              &types.ObjectLockRule{DefaultRetention: &types.DefaultRetention{Mode: types.ObjectLockRetentionModeGovernance, Days: aws.Int32(40)}},
		},
	}); err != nil {
		t.Fatalf("PutObjectLockConfiguration: %v", err)
	}
	rep, err = newSink(t, srv.Client(), storage.Config{Bucket: locked}).CheckBucket(ctx, storage.LifecycleConfig{RetentionDays: 30, MultipartCleanup: storage.MultipartCleanupServer})
	if err != nil {
		t.Fatalf("CheckBucket(locked): %v", err)
	}
	t.Logf("bucket check:\n%v", rep)
	if rep.Versioning != "Enabled" || rep.LockMode != "GOVERNANCE" || rep.LockDays != 40 || !hasProblem(rep, "the bucket's default retention keeps evidence 40 days") {
		t.Errorf("CheckBucket(locked) = %+v, want versioning Enabled, GOVERNANCE 40 days, and the lock problem", rep)
	}
}

func hasProblem(rep *storage.BucketReport, s string) bool {
	return slices.ContainsFunc(rep.Problems, func(p string) bool { return strings.Contains(p, s) })
}

// minioSink starts MinIO (once per test) and gives a sink on a new bucket.
type minioEnv struct {
	m *storagetest.MinIO
}

func (e minioEnv) sink(t *testing.T, lock bool, cfg storage.Config, opts ...func(*s3.Options)) (*storage.S3, string) {
	t.Helper()
	cfg.Bucket = e.m.NewBucket(t, lock)
	return newSink(t, e.m.Client(opts...), cfg), cfg.Bucket
}

func getRules(t *testing.T, ctx context.Context, c *s3.Client, bucket string) []types.LifecycleRule {
	t.Helper()
	out, err := c.GetBucketLifecycleConfiguration(ctx, &s3.GetBucketLifecycleConfigurationInput{Bucket: &bucket})
	if err != nil {
		var code interface{ ErrorCode() string }
		if errors.As(err, &code) && code.ErrorCode() == "NoSuchLifecycleConfiguration" {
			return nil
		}
		t.Fatalf("GetBucketLifecycleConfiguration: %v", err)
	}
	return out.Rules
}

func ruleIDs(rules []types.LifecycleRule) []string {
	var ids []string
	for _, r := range rules {
		ids = append(ids, aws.ToString(r.ID))
	}
	slices.Sort(ids)
	return ids
}

func findRule(rules []types.LifecycleRule, id string) *types.LifecycleRule {
	for i := range rules {
		if aws.ToString(rules[i].ID) == id {
			return &rules[i]
		}
	}
	return nil
}

var foreignRule = types.LifecycleRule{
	ID:         aws.String("owner-logs"),
	Status:     types.ExpirationStatusEnabled,
	Filter:     &types.LifecycleRuleFilter{Prefix: aws.String("logs/")},
	Expiration: &types.LifecycleExpiration{Days: aws.Int32(90)},
}

func putForeign(t *testing.T, ctx context.Context, c *s3.Client, bucket string, rules ...types.LifecycleRule) {
	t.Helper()
	if _, err := c.PutBucketLifecycleConfiguration(ctx, &s3.PutBucketLifecycleConfigurationInput{
		Bucket: &bucket, LifecycleConfiguration: &types.BucketLifecycleConfiguration{Rules: rules},
	}); err != nil {
		t.Fatalf("PutBucketLifecycleConfiguration(foreign): %v", err)
	}
}

// TestLifecycleMinIO runs the lifecycle cases against MinIO, which
// implements lifecycle configuration but refuses a rule whose only action
// is the multipart abort and drops that action from a rule with another.
func TestLifecycleMinIO(t *testing.T) {
	t.Parallel()
	env := minioEnv{storagetest.StartMinIO(t)}

	t.Run("merge keeps a foreign rule and reports the refused multipart rule", func(t *testing.T) {
		t.Parallel()
		ctx := testCtx(t)
		sink, bucket := env.sink(t, false, storage.Config{})
		c := env.m.Client()
		putForeign(t, ctx, c, bucket, foreignRule)
		rep, err := sink.SetupLifecycle(ctx, storage.LifecycleConfig{RetentionDays: 30})
		if err != nil {
			t.Fatalf("SetupLifecycle: %v", err)
		}
		t.Logf("bucket setup:\n%v", rep)
		if out := rep.String(); !strings.Contains(out, "refused: "+storage.RuleAbortMultipart+": refused by the server") || !strings.Contains(out, "owner-logs") || strings.Contains(out, "\nok\n") {
			t.Errorf("setup printout lacks the refusal or the foreign rule, or says ok:\n%s", out)
		}
		if rep.OK() || len(rep.Refused) != 1 || rep.Refused[0].ID != storage.RuleAbortMultipart || !strings.Contains(rep.Refused[0].Reason, "refused by the server") {
			t.Errorf("Refused = %v, want %s refused by the server", rep.Refused, storage.RuleAbortMultipart)
		}
		rules := getRules(t, ctx, c, bucket)
		if got := ruleIDs(rules); !slices.Equal(got, []string{storage.RuleExpire, "owner-logs"}) {
			t.Fatalf("rules after setup = %v, want %s and owner-logs", got, storage.RuleExpire)
		}
		if f := findRule(rules, "owner-logs"); aws.ToString(f.Filter.Prefix) != "logs/" || aws.ToInt32(f.Expiration.Days) != 90 {
			t.Errorf("foreign rule after setup = %+v, want it unchanged", f)
		}
		e := findRule(rules, storage.RuleExpire)
		if aws.ToString(e.Filter.Prefix) != "evidence/" || aws.ToInt32(e.Expiration.Days) != 30 || e.NoncurrentVersionExpiration == nil || aws.ToInt32(e.NoncurrentVersionExpiration.NoncurrentDays) != 1 {
			t.Errorf("%s = %+v, want evidence/ expired after 30 days, noncurrent after 1", storage.RuleExpire, e)
		}

		check, err := sink.CheckBucket(ctx, storage.LifecycleConfig{RetentionDays: 30})
		if err != nil {
			t.Fatalf("CheckBucket: %v", err)
		}
		t.Logf("bucket check (rule cleanup):\n%v", check)
		if out := check.String(); !strings.Contains(out, "problem: no lifecycle rule aborts") || !strings.Contains(out, "  owner-logs") || strings.HasSuffix(out, "ok\n") {
			t.Errorf("check printout lacks the problem or the foreign rule, or says ok:\n%s", out)
		}
		if len(check.Problems) != 1 || !hasProblem(check, "aborts incomplete multipart uploads") {
			t.Errorf("CheckBucket problems = %q, want the multipart rule missing alone", check.Problems)
		}
		if slices.ContainsFunc(check.Rules, func(r storage.Rule) bool { return r.ID == "owner-logs" }) || len(check.Others) != 1 || check.Others[0].ID != "owner-logs" {
			t.Errorf("CheckBucket rules %v, others %v; want owner-logs among the others alone, as it does not apply to evidence/", check.Rules, check.Others)
		}

		// With the server's own clean-up: nothing refused, nothing to
		// write a second time, and the check passes.
		server := storage.LifecycleConfig{RetentionDays: 30, MultipartCleanup: storage.MultipartCleanupServer}
		for i := range 2 {
			rep, err := sink.SetupLifecycle(ctx, server)
			if err != nil || !rep.OK() || rep.Changed {
				t.Errorf("SetupLifecycle(server) run %d = %+v, %v; want ok and nothing changed", i+1, rep, err)
			}
			if err == nil {
				t.Logf("bucket setup (server cleanup), run %d:\n%v", i+1, rep)
			}
		}
		check, err = sink.CheckBucket(ctx, server)
		if err != nil || !check.OK() {
			t.Errorf("CheckBucket(server) = %v, %v; want ok", check, err)
		}
		t.Logf("bucket check (server cleanup):\n%v", check)
		if got := ruleIDs(getRules(t, ctx, c, bucket)); !slices.Equal(got, []string{storage.RuleExpire, "owner-logs"}) {
			t.Errorf("rules after repeated setup = %v", got)
		}

		// A retention of 0 removes facesync-expire and keeps the foreign
		// rule; the check then wants no expiry.
		rep, err = sink.SetupLifecycle(ctx, storage.LifecycleConfig{MultipartCleanup: storage.MultipartCleanupServer})
		if err != nil || !rep.OK() || !slices.Equal(rep.Removed, []string{storage.RuleExpire}) {
			t.Errorf("SetupLifecycle(retention 0) = %+v, %v; want %s removed", rep, err, storage.RuleExpire)
		}
		if got := ruleIDs(getRules(t, ctx, c, bucket)); !slices.Equal(got, []string{"owner-logs"}) {
			t.Errorf("rules after retention 0 = %v, want owner-logs alone", got)
		}
	})

	t.Run("setup from nothing is idempotent and removable", func(t *testing.T) {
		t.Parallel()
		ctx := testCtx(t)
		sink, bucket := env.sink(t, false, storage.Config{Prefix: "faces/"})
		c := env.m.Client()
		lc := storage.LifecycleConfig{RetentionDays: 7}
		var first []types.LifecycleRule
		for i := range 2 {
			rep, err := sink.SetupLifecycle(ctx, lc)
			if err != nil {
				t.Fatalf("SetupLifecycle run %d: %v", i+1, err)
			}
			if len(rep.Refused) != 1 || rep.Refused[0].ID != storage.RuleAbortMultipart {
				t.Errorf("run %d Refused = %v, want %s alone", i+1, rep.Refused, storage.RuleAbortMultipart)
			}
			rules := getRules(t, ctx, c, bucket)
			if i == 0 {
				first = rules
			} else if !slices.Equal(ruleIDs(rules), ruleIDs(first)) || aws.ToInt32(findRule(rules, storage.RuleExpire).Expiration.Days) != 7 {
				t.Errorf("run 2 rules = %v, want %v as after run 1", ruleIDs(rules), ruleIDs(first))
			}
		}
		rep, err := sink.SetupLifecycle(ctx, storage.LifecycleConfig{MultipartCleanup: storage.MultipartCleanupServer})
		if err != nil || !rep.OK() || !rep.Changed {
			t.Fatalf("SetupLifecycle(nothing wanted) = %+v, %v", rep, err)
		}
		if rules := getRules(t, ctx, c, bucket); len(rules) != 0 {
			t.Errorf("rules after removing every facesync rule = %v, want none", ruleIDs(rules))
		}
	})

	t.Run("a silently dropped action is reported", func(t *testing.T) {
		t.Parallel()
		ctx := testCtx(t)
		// Give the multipart rule a second action on its way out, as a
		// combined rule would have: MinIO accepts it and drops the abort.
		combine := func(o *s3.Options) {
			o.APIOptions = append(o.APIOptions, func(st *middleware.Stack) error {
				return st.Initialize.Add(middleware.InitializeMiddlewareFunc("combine", func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
					if p, ok := in.Parameters.(*s3.PutBucketLifecycleConfigurationInput); ok {
						cp := *p
						cfg := *p.LifecycleConfiguration
						cfg.Rules = slices.Clone(cfg.Rules)
						for i := range cfg.Rules {
							if aws.ToString(cfg.Rules[i].ID) == storage.RuleAbortMultipart {
								cfg.Rules[i].Expiration = &types.LifecycleExpiration{Days: aws.Int32(3650)}
							}
						}
						cp.LifecycleConfiguration = &cfg
						in.Parameters = &cp
					}
					return next.HandleInitialize(ctx, in)
				}), middleware.Before)
			})
		}
		sink, _ := env.sink(t, false, storage.Config{}, combine)
		rep, err := sink.SetupLifecycle(ctx, storage.LifecycleConfig{})
		if err != nil {
			t.Fatalf("SetupLifecycle: %v", err)
		}
		t.Logf("setup: %+v", rep)
		if len(rep.Refused) != 1 || rep.Refused[0].ID != storage.RuleAbortMultipart || !strings.Contains(rep.Refused[0].Reason, "changed by the server") {
			t.Errorf("Refused = %v, want %s changed by the server", rep.Refused, storage.RuleAbortMultipart)
		}
	})

	t.Run("check problems", func(t *testing.T) {
		t.Parallel()
		ctx := testCtx(t)
		// A fresh versioned bucket with a default retention longer than
		// the evidence retention, and a foreign rule that expires evidence
		// but not its noncurrent versions.
		sink, bucket := env.sink(t, true, storage.Config{LockMode: storage.LockGovernance, LockDays: 60})
		c := env.m.Client()
		if _, err := c.PutObjectLockConfiguration(ctx, &s3.PutObjectLockConfigurationInput{
			Bucket: &bucket,
			ObjectLockConfiguration: &types.ObjectLockConfiguration{
				ObjectLockEnabled: types.ObjectLockEnabledEnabled,
				Rule:              &types.ObjectLockRule{DefaultRetention: &types.DefaultRetention{Mode: types.ObjectLockRetentionModeCompliance, Years: aws.Int32(1)}},
			},
		}); err != nil {
			t.Fatalf("PutObjectLockConfiguration: %v", err)
		}
		lc := storage.LifecycleConfig{RetentionDays: 30}
		rep, err := sink.CheckBucket(ctx, lc)
		if err != nil {
			t.Fatalf("CheckBucket: %v", err)
		}
		t.Logf("bucket check:\n%v", rep)
		for _, p := range []string{"aborts incomplete multipart uploads", "no lifecycle rule expires every object", "the bucket's default retention keeps evidence 366 days"} {
			if !hasProblem(rep, p) {
				t.Errorf("problems %q lack %q", rep.Problems, p)
			}
		}
		if rep.Region != storagetest.Region || rep.Versioning != "Enabled" || rep.LockMode != "COMPLIANCE" || rep.LockYears != 1 {
			t.Errorf("report = %+v, want us-east-1, versioning Enabled, COMPLIANCE 1 year", rep)
		}

		putForeign(t, ctx, c, bucket, types.LifecycleRule{
			ID: aws.String("owner-all"), Status: types.ExpirationStatusEnabled,
			Filter:     &types.LifecycleRuleFilter{Prefix: aws.String("")},
			Expiration: &types.LifecycleExpiration{Days: aws.Int32(20)},
		})
		rep, err = sink.CheckBucket(ctx, storage.LifecycleConfig{RetentionDays: 90, MultipartCleanup: storage.MultipartCleanupServer})
		if err != nil {
			t.Fatalf("CheckBucket: %v", err)
		}
		t.Logf("bucket check:\n%v", rep)
		if len(rep.Problems) != 2 || !hasProblem(rep, "noncurrent versions") || !hasProblem(rep, "default retention keeps evidence 366 days") || len(rep.Notes) != 1 {
			t.Errorf("problems %q, notes %q; want noncurrent versions and the lock, and a note on the receipts", rep.Problems, rep.Notes)
		}
		if len(rep.Rules) != 1 || rep.Rules[0].ID != "owner-all" {
			t.Errorf("rules that apply = %v, want owner-all", rep.Rules)
		}
		// FACESYNC_S3_LOCK_DAYS alone outliving the retention.
		rep, err = sink.CheckBucket(ctx, storage.LifecycleConfig{RetentionDays: 500, MultipartCleanup: storage.MultipartCleanupServer})
		if err != nil || hasProblem(rep, "keeps evidence") {
			t.Errorf("CheckBucket(retention 500) = %v, %v; want no lock problem", rep, err)
		}
	})
}

// TestPurgeMinIO purges a stored order from a versioned MinIO bucket
// under GOVERNANCE retention: MinIO wants a checksum on DeleteObjects and
// honours the governance bypass.
func TestPurgeMinIO(t *testing.T) {
	t.Parallel()
	env := minioEnv{storagetest.StartMinIO(t)}
	ctx := testCtx(t)
	sink, bucket := env.sink(t, true, storage.Config{LockMode: storage.LockGovernance, LockDays: 1})
	files := storeOrder(t, ctx, sink, "app1", "order1")
	if err := sink.PurgeCheck(ctx, "app1", "order1", false); !errors.Is(err, storage.ErrLocked) {
		t.Fatalf("PurgeCheck(no bypass) = %v, want ErrLocked", err)
	}
	if err := sink.PurgeCheck(ctx, "app1", "order1", true); err != nil {
		t.Fatalf("PurgeCheck(bypass) = %v", err)
	}
	deleted, err := sink.PurgeObjects(ctx, "app1", "order1", true)
	if err != nil || len(deleted) != 3 || deleted[0].SHA256 != files[0].SHA256 || deleted[2].Key != "evidence/app1/order1/manifest.json" {
		t.Fatalf("PurgeObjects = %+v, %v; want the 2 files with their hashes, then the manifest", deleted, err)
	}
	if left := storagetest.Versions(t, env.m.Client(), bucket, "evidence/app1/order1/"); len(left) != 0 {
		t.Errorf("versions left: %v", left)
	}
}

// TestSubsetOrder: after a refusal the multipart rule, the one servers are
// known to refuse, is the first left out.
func TestSubsetOrder(t *testing.T) {
	got := storage.SubsetIDs(storage.LifecycleConfig{RetentionDays: 1, MultipartCleanup: storage.MultipartCleanupRule})
	want := [][]string{{storage.RuleAbortMultipart, storage.RuleExpire}, {storage.RuleExpire}, {storage.RuleAbortMultipart}, {}}
	if !slices.EqualFunc(got, want, slices.Equal[[]string]) {
		t.Errorf("subsets = %q, want %q", got, want)
	}
}
