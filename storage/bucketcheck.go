package storage

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// notSupported is how BucketReport names a setting the server does not
// implement.
const notSupported = "not supported by the server"

// BucketReport is what CheckBucket found. Problems, each with its reason,
// are what make `facesync bucket check` answer no (exit 1).
type BucketReport struct {
	Bucket string
	Prefix string
	// Region is the bucket's location ("us-east-1" for the empty answer).
	Region string
	// Versioning is "Enabled", "Suspended" or "off".
	Versioning string
	// ObjectLock describes the bucket's object lock and default retention;
	// LockMode, LockDays and LockYears are that default ("" and 0 when
	// there is none).
	ObjectLock string
	LockMode   string
	LockDays   int
	LockYears  int
	// Encryption describes the default encryption.
	Encryption string
	// LifecycleSupported is false when the server answered NotImplemented
	// to a lifecycle read.
	LifecycleSupported bool
	// Rules are the lifecycle rules that apply to some object under the
	// prefix, Others the bucket's other rules.
	Rules  []Rule
	Others []Rule
	// Problems are the reasons the bucket does not do what the settings
	// call for.
	Problems []string
	// Notes are worth an operator's look but do not fail the check.
	Notes []string
}

// OK reports whether no problem was found.
func (r *BucketReport) OK() bool { return len(r.Problems) == 0 }

// String is the report as `facesync bucket check` prints it.
func (r *BucketReport) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "bucket:            %s\n", r.Bucket)
	fmt.Fprintf(&b, "prefix:            %s\n", r.Prefix)
	fmt.Fprintf(&b, "region:            %s\n", r.Region)
	fmt.Fprintf(&b, "versioning:        %s\n", r.Versioning)
	fmt.Fprintf(&b, "object lock:       %s\n", r.ObjectLock)
	fmt.Fprintf(&b, "encryption:        %s\n", r.Encryption)
	switch {
	case !r.LifecycleSupported:
		fmt.Fprintf(&b, "lifecycle rules:   %s\n", notSupported)
	case len(r.Rules) == 0:
		b.WriteString("lifecycle rules:   none apply to the prefix\n")
	default:
		b.WriteString("lifecycle rules that apply to the prefix:\n")
		for _, rule := range r.Rules {
			fmt.Fprintf(&b, "  %v\n", rule)
		}
	}
	if len(r.Others) > 0 {
		b.WriteString("other lifecycle rules of the bucket:\n")
		for _, rule := range r.Others {
			fmt.Fprintf(&b, "  %v\n", rule)
		}
	}
	for _, n := range r.Notes {
		fmt.Fprintf(&b, "note: %s\n", n)
	}
	for _, p := range r.Problems {
		fmt.Fprintf(&b, "problem: %s\n", p)
	}
	if r.OK() {
		b.WriteString("ok\n")
	}
	return b.String()
}

// CheckBucket reads the bucket's region, versioning, object-lock default,
// default encryption and lifecycle rules, and lists as problems: no rule
// aborting multipart uploads under the prefix (unless the clean-up is the
// server's); a retention that no rule
// enforces (for a versioned bucket, noncurrent versions too); an object
// lock, the longer of Config.LockDays and the bucket's default retention,
// that outlives the retention; and a server that answers NotImplemented to
// a lifecycle read. A server without default encryption or object-lock
// configuration reads is reported as such, not as a problem. The error is
// for what stops the check (the store unreachable, access denied, lc
// invalid).
func (s *S3) CheckBucket(ctx context.Context, lc LifecycleConfig) (*BucketReport, error) {
	if err := lc.Validate(s.cfg.Prefix); err != nil {
		return nil, err
	}
	bucket := &s.cfg.Bucket
	rep := &BucketReport{Bucket: s.cfg.Bucket, Prefix: s.cfg.Prefix, LifecycleSupported: true}

	loc, err := s.client.GetBucketLocation(ctx, &s3.GetBucketLocationInput{Bucket: bucket})
	switch {
	case err == nil:
		// The empty answer is us-east-1, and "EU" the legacy name of
		// eu-west-1.
		switch rep.Region = string(loc.LocationConstraint); rep.Region {
		case "":
			rep.Region = "us-east-1"
		case "EU":
			rep.Region = "eu-west-1"
		}
	case notImplemented(err):
		rep.Region = notSupported
	default:
		return nil, fmt.Errorf("storage: bucket %s: location: %w", s.cfg.Bucket, err)
	}

	ver, err := s.client.GetBucketVersioning(ctx, &s3.GetBucketVersioningInput{Bucket: bucket})
	switch {
	case err == nil:
		rep.Versioning = string(ver.Status)
		if rep.Versioning == "" {
			rep.Versioning = "off"
		}
	case notImplemented(err):
		rep.Versioning = notSupported
	default:
		return nil, fmt.Errorf("storage: bucket %s: versioning: %w", s.cfg.Bucket, err)
	}

	lock, err := s.client.GetObjectLockConfiguration(ctx, &s3.GetObjectLockConfigurationInput{Bucket: bucket})
	switch {
	case err == nil && lock.ObjectLockConfiguration != nil && lock.ObjectLockConfiguration.ObjectLockEnabled == types.ObjectLockEnabledEnabled:
		rep.ObjectLock = "enabled, no default retention"
		if r := lock.ObjectLockConfiguration.Rule; r != nil && r.DefaultRetention != nil {
			d := r.DefaultRetention
			rep.LockMode, rep.LockDays, rep.LockYears = string(d.Mode), int(aws.ToInt32(d.Days)), int(aws.ToInt32(d.Years))
			if rep.LockYears > 0 {
				rep.ObjectLock = fmt.Sprintf("enabled, default retention %s %s", rep.LockMode, plural(rep.LockYears, "year"))
			} else {
				rep.ObjectLock = fmt.Sprintf("enabled, default retention %s %s", rep.LockMode, plural(rep.LockDays, "day"))
			}
		}
	case err == nil, errorCode(err) == "ObjectLockConfigurationNotFoundError":
		rep.ObjectLock = "off"
	case notImplemented(err):
		rep.ObjectLock = notSupported
	default:
		return nil, fmt.Errorf("storage: bucket %s: object lock configuration: %w", s.cfg.Bucket, err)
	}

	enc, err := s.client.GetBucketEncryption(ctx, &s3.GetBucketEncryptionInput{Bucket: bucket})
	switch {
	case err == nil:
		rep.Encryption = describeEncryption(enc.ServerSideEncryptionConfiguration)
	case errorCode(err) == "ServerSideEncryptionConfigurationNotFoundError":
		rep.Encryption = "none"
	case notImplemented(err):
		rep.Encryption = notSupported
	default:
		return nil, fmt.Errorf("storage: bucket %s: default encryption: %w", s.cfg.Bucket, err)
	}

	rules, err := s.getLifecycle(ctx)
	switch {
	case errors.Is(err, errLifecycleUnsupported):
		rep.LifecycleSupported = false
		rep.Problems = append(rep.Problems, "lifecycle rules: "+notSupported+" (it answered NotImplemented): stale multipart uploads and expired evidence would never be removed by a rule")
	case err != nil:
		return nil, err
	}
	var all []Rule
	for _, lr := range rules {
		r := readRule(lr)
		all = append(all, r)
		if r.touches(s.cfg.Prefix) {
			rep.Rules = append(rep.Rules, r)
		} else {
			rep.Others = append(rep.Others, r)
		}
	}
	if rep.LifecycleSupported {
		rep.Problems = append(rep.Problems, ruleProblems(s.cfg.Prefix, lc, rep.Versioning, all)...)
		for _, r := range all {
			if r.Enabled && (r.ExpireDays > 0 || r.NoncurrentDays > 0 || len(r.Other) > 0) && r.touches(lc.ReceiptPrefix) {
				rep.Notes = append(rep.Notes, fmt.Sprintf("rule %v applies to the receipt prefix %s: deletion receipts may be removed", r, lc.ReceiptPrefix))
			}
		}
	}

	// A year of retention is up to 366 days; count it so, to err on the
	// side of refusing.
	longest, from := s.cfg.LockDays, "FACESYNC_S3_LOCK_DAYS"
	if d := rep.LockDays + 366*rep.LockYears; d > longest {
		longest, from = d, "the bucket's default retention"
	}
	if err := CheckRetentionLock(lc.RetentionDays, longest); err != nil {
		rep.Problems = append(rep.Problems, fmt.Sprintf("%s keeps evidence %d days, longer than FACESYNC_EVIDENCE_RETENTION (%d days): expiry would be impossible", from, longest, lc.RetentionDays))
	}
	return rep, nil
}

// ruleProblems lists what the rules fail to do for prefix under lc.
func ruleProblems(prefix string, lc LifecycleConfig, versioning string, rules []Rule) []string {
	var abort, expire, noncurrent bool
	for _, r := range rules {
		if !r.covers(prefix) {
			continue
		}
		abort = abort || r.AbortMultipartDays > 0
		expire = expire || (r.ExpireDays > 0 && r.ExpireDays <= lc.RetentionDays)
		noncurrent = noncurrent || r.NoncurrentDays > 0
	}
	var out []string
	if lc.MultipartCleanup != MultipartCleanupServer && !abort {
		out = append(out, fmt.Sprintf("no lifecycle rule aborts incomplete multipart uploads under %s (run `facesync bucket setup`; FACESYNC_S3_MULTIPART_CLEANUP=server if the server cleans them up itself)", prefix))
	}
	if lc.RetentionDays > 0 {
		if !expire {
			out = append(out, fmt.Sprintf("FACESYNC_EVIDENCE_RETENTION is %d days but no lifecycle rule expires every object under %s within that (run `facesync bucket setup`)", lc.RetentionDays, prefix))
		}
		if versioning != "off" && versioning != notSupported && !noncurrent {
			out = append(out, fmt.Sprintf("the bucket is versioned (%s) but no lifecycle rule expires noncurrent versions under %s: expired evidence would stay as noncurrent versions (run `facesync bucket setup`)", versioning, prefix))
		}
	}
	return out
}

func describeEncryption(c *types.ServerSideEncryptionConfiguration) string {
	if c == nil || len(c.Rules) == 0 {
		return "none"
	}
	var parts []string
	for _, r := range c.Rules {
		d := r.ApplyServerSideEncryptionByDefault
		if d == nil {
			continue
		}
		p := string(d.SSEAlgorithm)
		if k := aws.ToString(d.KMSMasterKeyID); k != "" {
			p += " key " + k
		}
		parts = append(parts, p)
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

func plural(n int, unit string) string {
	if n == 1 {
		return "1 " + unit
	}
	return fmt.Sprintf("%d %ss", n, unit)
}
