package storage

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
)

// Lifecycle rule IDs facesync owns in a bucket's lifecycle configuration;
// every other rule is the bucket owner's and is kept as it is.
const (
	RuleAbortMultipart = "facesync-abort-multipart"
	RuleExpire         = "facesync-expire"
)

// Multipart clean-up modes of LifecycleConfig: a lifecycle rule aborts
// stale multipart uploads, or the server does it by itself (MinIO, after
// 24 h) and refuses or drops the rule.
const (
	MultipartCleanupRule   = "rule"
	MultipartCleanupServer = "server"
)

// Defaults and limits of LifecycleConfig.
const (
	DefaultReceiptPrefix = "receipts/"
	MaxRetentionDays     = 36500
	// abortMultipartDays and noncurrentDays are the contract's: stale
	// uploads go after 1 day, and so do versions once they are noncurrent.
	abortMultipartDays = 1
	noncurrentDays     = 1
)

// LifecycleConfig is what the lifecycle of evidence is set to
// (FACESYNC_EVIDENCE_RETENTION, FACESYNC_S3_MULTIPART_CLEANUP,
// FACESYNC_S3_RECEIPT_PREFIX).
type LifecycleConfig struct {
	// RetentionDays is how long evidence is kept; 0 keeps it until purged.
	RetentionDays int
	// MultipartCleanup is MultipartCleanupRule (empty means it) or
	// MultipartCleanupServer.
	MultipartCleanup string
	// ReceiptPrefix starts the keys of deletion receipts; empty means
	// DefaultReceiptPrefix. It must lie outside the evidence prefix, so
	// that lifecycle rules never expire a receipt.
	ReceiptPrefix string
}

// Validate fills in c's defaults and checks it against the evidence
// prefix (Config.Prefix, or DefaultPrefix when empty).
func (c *LifecycleConfig) Validate(evidencePrefix string) error {
	if c.RetentionDays < 0 || c.RetentionDays > MaxRetentionDays {
		return fmt.Errorf("storage: evidence retention %d days out of range [0, %d]", c.RetentionDays, MaxRetentionDays)
	}
	switch c.MultipartCleanup {
	case "":
		c.MultipartCleanup = MultipartCleanupRule
	case MultipartCleanupRule, MultipartCleanupServer:
	default:
		return fmt.Errorf("storage: multipart cleanup %q: want %s or %s", truncate(c.MultipartCleanup), MultipartCleanupRule, MultipartCleanupServer)
	}
	if c.ReceiptPrefix == "" {
		c.ReceiptPrefix = DefaultReceiptPrefix
	}
	return CheckReceiptPrefix(c.ReceiptPrefix, evidencePrefix)
}

// CheckReceiptPrefix refuses a receipt prefix that is malformed or
// overlaps the evidence prefix: inside it, a lifecycle rule would expire
// the receipts; around it, a receipt folder could be taken for an order's.
func CheckReceiptPrefix(receiptPrefix, evidencePrefix string) error {
	if evidencePrefix == "" {
		evidencePrefix = DefaultPrefix
	}
	if !strings.HasSuffix(receiptPrefix, "/") || strings.HasPrefix(receiptPrefix, "/") {
		return fmt.Errorf("storage: receipt prefix %q must end with / and not start with /", truncate(receiptPrefix))
	}
	if strings.HasPrefix(receiptPrefix, evidencePrefix) || strings.HasPrefix(evidencePrefix, receiptPrefix) {
		return fmt.Errorf("storage: receipt prefix %q overlaps the evidence prefix %q: receipts must lie outside it, where lifecycle rules never expire them", truncate(receiptPrefix), truncate(evidencePrefix))
	}
	return nil
}

// CheckRetentionLock refuses an evidence retention shorter than an
// object-lock retention: the expiry rule could not delete a version that
// is still locked. lockDays is FACESYNC_S3_LOCK_DAYS, or the longer of it
// and the bucket's default retention; a retention of 0 (kept until
// purged) or a lock of 0 never conflict. The worker calls it at start.
func CheckRetentionLock(retentionDays, lockDays int) error {
	if retentionDays > 0 && lockDays > retentionDays {
		return fmt.Errorf("storage: object lock keeps evidence %d days, longer than the evidence retention of %d days: expiry would be impossible", lockDays, retentionDays)
	}
	return nil
}

// Rule is one lifecycle rule as facesync reads it.
type Rule struct {
	ID      string
	Enabled bool
	// Prefix is the rule's key prefix; "" applies to the whole bucket.
	Prefix string
	// Filtered: the rule also filters on tags or object size, so it may
	// not apply to every object under Prefix.
	Filtered bool
	// Days of each action; 0 when the rule lacks it.
	AbortMultipartDays int
	ExpireDays         int
	NoncurrentDays     int
	// Other lists the rule's other actions (transitions, an expiry date,
	// a delete-marker clean-up) by name.
	Other []string
}

// String gives the rule on one line, as `bucket check` prints it.
func (r Rule) String() string {
	var b strings.Builder
	id := r.ID
	if id == "" {
		id = "(no id)"
	}
	fmt.Fprintf(&b, "%s prefix=%q", id, r.Prefix)
	if !r.Enabled {
		b.WriteString(" disabled")
	}
	if r.Filtered {
		b.WriteString(" filtered-by-tag-or-size")
	}
	if r.AbortMultipartDays > 0 {
		fmt.Fprintf(&b, " abort-multipart=%dd", r.AbortMultipartDays)
	}
	if r.ExpireDays > 0 {
		fmt.Fprintf(&b, " expire=%dd", r.ExpireDays)
	}
	if r.NoncurrentDays > 0 {
		fmt.Fprintf(&b, " noncurrent-expire=%dd", r.NoncurrentDays)
	}
	for _, o := range r.Other {
		b.WriteString(" " + o)
	}
	return b.String()
}

// covers reports whether the enabled rule applies to every object under
// prefix.
func (r Rule) covers(prefix string) bool {
	return r.Enabled && !r.Filtered && strings.HasPrefix(prefix, r.Prefix)
}

// touches reports whether the rule applies to some object under prefix.
func (r Rule) touches(prefix string) bool {
	return strings.HasPrefix(prefix, r.Prefix) || strings.HasPrefix(r.Prefix, prefix)
}

func (r Rule) equal(o Rule) bool {
	return r.ID == o.ID && r.Enabled == o.Enabled && r.Prefix == o.Prefix && r.Filtered == o.Filtered &&
		r.AbortMultipartDays == o.AbortMultipartDays && r.ExpireDays == o.ExpireDays &&
		r.NoncurrentDays == o.NoncurrentDays && slices.Equal(r.Other, o.Other)
}

// readRule flattens an SDK rule; the prefix may sit in the filter, in the
// filter's And, or (legacy) on the rule itself.
func readRule(lr types.LifecycleRule) Rule {
	r := Rule{ID: aws.ToString(lr.ID), Enabled: lr.Status == types.ExpirationStatusEnabled}
	// Deprecated in the API, still what older configurations hold.
	r.Prefix = aws.ToString(lr.Prefix) //lint:ignore SA1019 a foreign rule may still use it
	if f := lr.Filter; f != nil {
		if f.Prefix != nil {
			r.Prefix = *f.Prefix
		}
		if f.Tag != nil || f.ObjectSizeGreaterThan != nil || f.ObjectSizeLessThan != nil {
			r.Filtered = true
		}
		if a := f.And; a != nil {
			if a.Prefix != nil {
				r.Prefix = *a.Prefix
			}
			if len(a.Tags) > 0 || a.ObjectSizeGreaterThan != nil || a.ObjectSizeLessThan != nil {
				r.Filtered = true
			}
		}
	}
	if a := lr.AbortIncompleteMultipartUpload; a != nil {
		r.AbortMultipartDays = int(aws.ToInt32(a.DaysAfterInitiation))
	}
	if e := lr.Expiration; e != nil {
		r.ExpireDays = int(aws.ToInt32(e.Days))
		if e.Date != nil {
			r.Other = append(r.Other, "expire-on="+e.Date.UTC().Format(time.DateOnly))
		}
		if aws.ToBool(e.ExpiredObjectDeleteMarker) {
			r.Other = append(r.Other, "expired-delete-markers")
		}
	}
	if n := lr.NoncurrentVersionExpiration; n != nil {
		r.NoncurrentDays = int(aws.ToInt32(n.NoncurrentDays))
		if k := aws.ToInt32(n.NewerNoncurrentVersions); k > 0 {
			r.Other = append(r.Other, fmt.Sprintf("keep-newer-noncurrent=%d", k))
		}
	}
	if len(lr.Transitions) > 0 {
		r.Other = append(r.Other, "transition")
	}
	if len(lr.NoncurrentVersionTransitions) > 0 {
		r.Other = append(r.Other, "noncurrent-transition")
	}
	return r
}

// RuleProblem is a facesync rule the server refused or did not keep.
type RuleProblem struct {
	ID     string
	Reason string
}

func (p RuleProblem) String() string { return p.ID + ": " + p.Reason }

// LifecycleReport is what SetupLifecycle did and found.
type LifecycleReport struct {
	// Unsupported: the server answered NotImplemented to lifecycle
	// configuration; every facesync rule wanted is then in Refused.
	Unsupported bool
	// Wanted lists the facesync rules the settings call for, Removed the
	// facesync rules found and no longer wanted.
	Wanted  []Rule
	Removed []string
	// Changed: the configuration was written (or deleted); false when
	// the bucket already had it.
	Changed bool
	// Rules is the whole configuration read back after the write.
	Rules []Rule
	// Refused lists each wanted facesync rule the server refused, dropped
	// or changed.
	Refused []RuleProblem
	// LostForeign lists rules of the bucket's owner that were there before
	// and are missing from the configuration read back.
	LostForeign []string
}

// OK reports whether every wanted facesync rule is in place and no rule
// of the owner's was lost.
func (r *LifecycleReport) OK() bool { return len(r.Refused) == 0 && len(r.LostForeign) == 0 }

// String is the report as `facesync bucket setup` prints it.
func (r *LifecycleReport) String() string {
	var b strings.Builder
	if r.Unsupported {
		fmt.Fprintf(&b, "lifecycle configuration: %s\n", notSupported)
	}
	if len(r.Wanted) == 0 {
		b.WriteString("facesync rules wanted: none\n")
	} else {
		b.WriteString("facesync rules wanted:\n")
		for _, w := range r.Wanted {
			fmt.Fprintf(&b, "  %v\n", w)
		}
	}
	for _, id := range r.Removed {
		fmt.Fprintf(&b, "removed: %s\n", id)
	}
	if !r.Unsupported {
		if r.Changed {
			b.WriteString("configuration written; read back:\n")
		} else {
			b.WriteString("configuration unchanged:\n")
		}
		for _, rule := range r.Rules {
			fmt.Fprintf(&b, "  %v\n", rule)
		}
	}
	for _, p := range r.Refused {
		fmt.Fprintf(&b, "refused: %v\n", p)
	}
	for _, id := range r.LostForeign {
		fmt.Fprintf(&b, "lost: the bucket's rule %s is missing after the write\n", id)
	}
	if r.OK() {
		b.WriteString("ok\n")
	}
	return b.String()
}

func isFacesyncRule(id string) bool { return id == RuleAbortMultipart || id == RuleExpire }

// wantedRules are the facesync rules lc calls for under prefix, the
// multipart rule first.
func wantedRules(prefix string, lc LifecycleConfig) []types.LifecycleRule {
	var out []types.LifecycleRule
	if lc.MultipartCleanup != MultipartCleanupServer {
		out = append(out, types.LifecycleRule{
			ID:                             aws.String(RuleAbortMultipart),
			Status:                         types.ExpirationStatusEnabled,
			Filter:                         &types.LifecycleRuleFilter{Prefix: aws.String(prefix)},
			AbortIncompleteMultipartUpload: &types.AbortIncompleteMultipartUpload{DaysAfterInitiation: aws.Int32(abortMultipartDays)},
		})
	}
	if lc.RetentionDays > 0 {
		out = append(out, types.LifecycleRule{
			ID:                          aws.String(RuleExpire),
			Status:                      types.ExpirationStatusEnabled,
			Filter:                      &types.LifecycleRuleFilter{Prefix: aws.String(prefix)},
			Expiration:                  &types.LifecycleExpiration{Days: aws.Int32(int32(lc.RetentionDays))},
			NoncurrentVersionExpiration: &types.NoncurrentVersionExpiration{NoncurrentDays: aws.Int32(noncurrentDays)},
		})
	}
	return out
}

// errLifecycleUnsupported marks a NotImplemented answer to a lifecycle
// request.
var errLifecycleUnsupported = errors.New("lifecycle configuration not supported by the server")

// getLifecycle reads the bucket's rules: none when it has no
// configuration, errLifecycleUnsupported when the server lacks the API.
func (s *S3) getLifecycle(ctx context.Context) ([]types.LifecycleRule, error) {
	out, err := s.client.GetBucketLifecycleConfiguration(ctx, &s3.GetBucketLifecycleConfigurationInput{Bucket: &s.cfg.Bucket})
	switch {
	case err == nil:
		return out.Rules, nil
	case errorCode(err) == "NoSuchLifecycleConfiguration":
		return nil, nil
	case notImplemented(err):
		return nil, fmt.Errorf("storage: bucket %s: %w", s.cfg.Bucket, errLifecycleUnsupported)
	}
	return nil, fmt.Errorf("storage: bucket %s: read lifecycle configuration: %w", s.cfg.Bucket, err)
}

// putLifecycle writes rules, deleting the configuration when there are
// none (S3 refuses an empty one).
func (s *S3) putLifecycle(ctx context.Context, rules []types.LifecycleRule) error {
	if len(rules) == 0 {
		_, err := s.client.DeleteBucketLifecycle(ctx, &s3.DeleteBucketLifecycleInput{Bucket: &s.cfg.Bucket})
		return err
	}
	_, err := s.client.PutBucketLifecycleConfiguration(ctx, &s3.PutBucketLifecycleConfigurationInput{
		Bucket:                 &s.cfg.Bucket,
		LifecycleConfiguration: &types.BucketLifecycleConfiguration{Rules: rules},
	})
	return err
}

// SetupLifecycle merges facesync's lifecycle rules into the bucket's
// configuration: RuleAbortMultipart aborts
// multipart uploads under the prefix after 1 day unless the server cleans
// them up itself; RuleExpire, with a retention, expires objects under the
// prefix after RetentionDays and noncurrent versions 1 day after they
// become noncurrent. Every other rule is kept as read; a facesync rule no
// longer wanted is removed. It then reads the configuration back.
//
// A server that refuses the configuration with a facesync rule in it gets
// it again without that rule, so the others still land; the rule is
// reported in Refused with the server's answer. A rule the server accepted
// but did not keep as written (MinIO drops the multipart abort from a rule
// that has another action) is reported in Refused too. Running it again
// with the same settings writes nothing.
//
// The error is for what stops it (the store unreachable, access denied,
// lc invalid); what the server refused is in the report.
func (s *S3) SetupLifecycle(ctx context.Context, lc LifecycleConfig) (*LifecycleReport, error) {
	if err := lc.Validate(s.cfg.Prefix); err != nil {
		return nil, err
	}
	prefix := s.cfg.Prefix
	want := wantedRules(prefix, lc)
	rep := &LifecycleReport{}
	for _, w := range want {
		rep.Wanted = append(rep.Wanted, readRule(w))
	}
	before, err := s.getLifecycle(ctx)
	if errors.Is(err, errLifecycleUnsupported) {
		rep.Unsupported = true
		for _, w := range want {
			rep.Refused = append(rep.Refused, RuleProblem{aws.ToString(w.ID), errLifecycleUnsupported.Error()})
		}
		return rep, nil
	}
	if err != nil {
		return nil, err
	}
	var foreign []types.LifecycleRule
	var ours []Rule
	for _, r := range before {
		if isFacesyncRule(aws.ToString(r.ID)) {
			ours = append(ours, readRule(r))
			if !slices.ContainsFunc(want, func(w types.LifecycleRule) bool { return aws.ToString(w.ID) == aws.ToString(r.ID) }) {
				rep.Removed = append(rep.Removed, aws.ToString(r.ID))
			}
			continue
		}
		foreign = append(foreign, r)
	}
	accepted := want
	if !rulesEqual(ours, rep.Wanted) {
		accepted, rep.Refused, err = s.putAccepted(ctx, foreign, want)
		if err != nil {
			return nil, err
		}
		rep.Changed = true
	}
	after, err := s.readBack(ctx, before, append(slices.Clip(foreign), accepted...))
	if err != nil {
		return nil, err
	}
	for _, r := range after {
		rep.Rules = append(rep.Rules, readRule(r))
	}
	for _, w := range accepted {
		wr := readRule(w)
		i := slices.IndexFunc(rep.Rules, func(r Rule) bool { return r.ID == wr.ID })
		switch {
		case i < 0:
			rep.Refused = append(rep.Refused, RuleProblem{wr.ID, "accepted but dropped by the server: not in the configuration read back"})
		case !rep.Rules[i].equal(wr):
			rep.Refused = append(rep.Refused, RuleProblem{wr.ID, fmt.Sprintf("changed by the server: wrote %v, read back %v", wr, rep.Rules[i])})
		}
	}
	for _, f := range foreign {
		id := aws.ToString(f.ID)
		if id != "" && !slices.ContainsFunc(rep.Rules, func(r Rule) bool { return r.ID == id }) {
			rep.LostForeign = append(rep.LostForeign, id)
		}
	}
	return rep, nil
}

// rulesEqual compares two sets of rules whatever their order.
func rulesEqual(a, b []Rule) bool {
	byID := func(x, y Rule) int { return strings.Compare(x.ID, y.ID) }
	a, b = slices.SortedFunc(slices.Values(a), byID), slices.SortedFunc(slices.Values(b), byID)
	return slices.EqualFunc(a, b, Rule.equal)
}

// putAccepted writes foreign plus want; when the server refuses that, it
// tries the subsets of want, largest first and the multipart rule the
// first to go (the one servers are known to refuse), and reports the
// rules left out with the server's answer to the full set.
func (s *S3) putAccepted(ctx context.Context, foreign, want []types.LifecycleRule) (accepted []types.LifecycleRule, refused []RuleProblem, err error) {
	var first error
	for _, sub := range subsets(want) {
		err := s.putLifecycle(ctx, append(slices.Clip(foreign), sub...))
		if err == nil {
			for _, w := range want {
				if !slices.ContainsFunc(sub, func(r types.LifecycleRule) bool { return aws.ToString(r.ID) == aws.ToString(w.ID) }) {
					refused = append(refused, RuleProblem{aws.ToString(w.ID), "refused by the server: " + serverAnswer(first)})
				}
			}
			return sub, refused, nil
		}
		if !refusal(err) {
			return nil, nil, fmt.Errorf("storage: bucket %s: write lifecycle configuration: %w", s.cfg.Bucket, err)
		}
		if first == nil {
			first = err
		}
	}
	return nil, nil, fmt.Errorf("storage: bucket %s: the server refuses the lifecycle configuration even without facesync's rules: %w", s.cfg.Bucket, first)
}

// subsets lists the subsets of rules (at most a few) from the whole set
// down to the empty one; among subsets of one size, those that keep the
// later rules come first.
func subsets(rules []types.LifecycleRule) [][]types.LifecycleRule {
	n := len(rules)
	var out [][]types.LifecycleRule
	for size := n; size >= 0; size-- {
		for mask := 0; mask < 1<<n; mask++ {
			if popcount(mask) != size {
				continue
			}
			var sub []types.LifecycleRule
			for i := range rules {
				if mask&(1<<(n-1-i)) != 0 {
					sub = append(sub, rules[i])
				}
			}
			out = append(out, sub)
		}
	}
	return out
}

func popcount(x int) int {
	n := 0
	for ; x > 0; x &= x - 1 {
		n++
	}
	return n
}

// readBack reads the configuration after a write. AWS may answer with the
// old configuration for a while after a change, so while the answer is
// still the one read before (and that is not what was written) it asks
// again, for up to about 10 seconds.
func (s *S3) readBack(ctx context.Context, before, written []types.LifecycleRule) ([]types.LifecycleRule, error) {
	same := func(a, b []types.LifecycleRule) bool {
		ra, rb := make([]Rule, len(a)), make([]Rule, len(b))
		for i := range a {
			ra[i] = readRule(a[i])
		}
		for i := range b {
			rb[i] = readRule(b[i])
		}
		return rulesEqual(ra, rb)
	}
	for wait := 250 * time.Millisecond; ; wait *= 2 {
		after, err := s.getLifecycle(ctx)
		if err != nil {
			return nil, err
		}
		if !same(after, before) || same(before, written) || wait > 5*time.Second {
			return after, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(wait):
		}
	}
}

// errorCode is the S3 error code of err, "" when it has none.
func errorCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

func notImplemented(err error) bool {
	return errorCode(err) == "NotImplemented" || httpStatus(err) == http.StatusNotImplemented
}

// refusal reports whether the server refused a request for its content
// (400, or 501 for an action it lacks) rather than failing to answer or
// denying access.
func refusal(err error) bool {
	st := httpStatus(err)
	return st == http.StatusBadRequest || st == http.StatusNotImplemented
}

// serverAnswer is the server's code and message for err.
func serverAnswer(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		if m := ae.ErrorMessage(); m != "" {
			return ae.ErrorCode() + ": " + m
		}
		return ae.ErrorCode()
	}
	if err == nil {
		return "no answer"
	}
	return err.Error()
}
