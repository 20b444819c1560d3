package storage

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// maxDeleteBatch is the most keys one DeleteObjects call takes (S3's
// limit).
const maxDeleteBatch = 1000

// maxPurgeRounds bounds how often PurgeObjects lists the folder again
// after deleting: a write that slips in between (the purge marker should
// prevent it) is removed on the next round.
const maxPurgeRounds = 5

// ErrLocked means an object version of the order may not be deleted yet:
// COMPLIANCE retention not passed, a legal hold, or GOVERNANCE retention
// without bypass. A *LockedError wraps it.
var ErrLocked = errors.New("evidence is under object lock")

// LockedVersion is one object version that object lock keeps.
type LockedVersion struct {
	Key       string
	VersionID string
	// Mode and Until are its retention ("" and zero when it has none).
	Mode  string
	Until time.Time
	// LegalHold: a legal hold is on.
	LegalHold bool
}

// Reason says why the version may not be deleted.
func (v LockedVersion) Reason() string {
	var rs []string
	if v.LegalHold {
		rs = append(rs, "a legal hold is on (only its removal allows deletion)")
	}
	switch v.Mode {
	case LockCompliance:
		rs = append(rs, fmt.Sprintf("it is under COMPLIANCE retention until %s (no one can delete it before then)", v.Until.UTC().Format(time.RFC3339)))
	case LockGovernance:
		rs = append(rs, fmt.Sprintf("it is under GOVERNANCE retention until %s (deleting it needs --bypass-governance)", v.Until.UTC().Format(time.RFC3339)))
	}
	return strings.Join(rs, "; ")
}

// LockedError is PurgeCheck's refusal: the versions object lock keeps.
type LockedError struct {
	AppID, OrderNo string
	Versions       []LockedVersion
}

func (e *LockedError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "storage: order %s/%s: nothing deleted, %d object version(s) may not be deleted:", e.AppID, e.OrderNo, len(e.Versions))
	for i, v := range e.Versions {
		if i > 0 {
			b.WriteString(";")
		}
		fmt.Fprintf(&b, " %s (version %s): %s", v.Key, v.VersionID, v.Reason())
	}
	return b.String()
}

// Is makes errors.Is(err, ErrLocked) hold.
func (e *LockedError) Is(target error) bool { return target == ErrLocked }

// DeletedObject is one object version a purge deleted, as its receipt
// lists it. SHA256 is the manifest's (hex), or for the manifest itself the
// hash of its bytes; "" when neither is known (an older version of a file,
// say).
type DeletedObject struct {
	Key       string `json:"key"`
	VersionID string `json:"version_id"`
	Size      int64  `json:"size"`
	SHA256    string `json:"sha256"`
}

// DeleteError is the versions DeleteObjects refused, each with the
// server's code and message.
type DeleteError struct {
	Failed []FailedDelete
}

// FailedDelete is one version DeleteObjects did not delete.
type FailedDelete struct {
	Key, VersionID, Code, Message string
}

func (e *DeleteError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "storage: %d object version(s) not deleted:", len(e.Failed))
	for i, f := range e.Failed {
		if i > 0 {
			b.WriteString(";")
		}
		fmt.Fprintf(&b, " %s (version %s): %s %s", f.Key, f.VersionID, f.Code, f.Message)
	}
	return b.String()
}

// version is one entry of ListObjectVersions: an object version or a
// delete marker.
type version struct {
	Key, VersionID string
	Size           int64
	Latest         bool
	DeleteMarker   bool
}

// listVersions lists every version and delete marker under prefix,
// pageSize at a time (0: the server's default).
func (s *S3) listVersions(ctx context.Context, prefix string, pageSize int32) ([]version, error) {
	in := &s3.ListObjectVersionsInput{Bucket: &s.cfg.Bucket, Prefix: &prefix}
	if pageSize > 0 {
		in.MaxKeys = &pageSize
	}
	var out []version
	for {
		page, err := s.client.ListObjectVersions(ctx, in)
		if err != nil {
			return nil, fmt.Errorf("storage: list versions under %s: %w", prefix, err)
		}
		for _, v := range page.Versions {
			out = append(out, version{Key: aws.ToString(v.Key), VersionID: aws.ToString(v.VersionId), Size: aws.ToInt64(v.Size), Latest: aws.ToBool(v.IsLatest)})
		}
		for _, m := range page.DeleteMarkers {
			out = append(out, version{Key: aws.ToString(m.Key), VersionID: aws.ToString(m.VersionId), Latest: aws.ToBool(m.IsLatest), DeleteMarker: true})
		}
		if !aws.ToBool(page.IsTruncated) {
			return out, nil
		}
		if page.NextKeyMarker == nil && page.NextVersionIdMarker == nil {
			return nil, fmt.Errorf("storage: list versions under %s: truncated answer without a marker", prefix)
		}
		in.KeyMarker, in.VersionIdMarker = page.NextKeyMarker, page.NextVersionIdMarker
	}
}

// PurgeCheck lists every object version under the order's folder and
// returns a *LockedError (wrapping ErrLocked) naming each one object lock
// keeps: COMPLIANCE retention not yet passed, a legal hold on, or
// GOVERNANCE retention not yet passed unless bypassGovernance. It deletes
// nothing. A purge calls it first so that it deletes all or nothing.
func (s *S3) PurgeCheck(ctx context.Context, appID, orderNo string, bypassGovernance bool) error {
	if err := checkIDs(appID, orderNo); err != nil {
		return err
	}
	vs, err := s.listVersions(ctx, s.folder(appID, orderNo), 0)
	if err != nil {
		return err
	}
	now := s.cfg.NowFunc()
	var locked []LockedVersion
	for _, v := range vs {
		if v.DeleteMarker {
			continue // a delete marker holds no data and no lock
		}
		in := &s3.HeadObjectInput{Bucket: &s.cfg.Bucket, Key: &v.Key}
		if v.VersionID != "" && v.VersionID != "null" {
			in.VersionId = aws.String(v.VersionID)
		}
		h, err := s.client.HeadObject(ctx, in)
		if err != nil {
			if isNotFound(err) {
				continue // gone since the listing
			}
			return fmt.Errorf("storage: head %s (version %s): %w", v.Key, v.VersionID, err)
		}
		lv := LockedVersion{Key: v.Key, VersionID: v.VersionID, LegalHold: h.ObjectLockLegalHoldStatus == types.ObjectLockLegalHoldStatusOn}
		until := aws.ToTime(h.ObjectLockRetainUntilDate)
		if until.After(now) {
			switch mode := string(h.ObjectLockMode); {
			case mode == LockCompliance, mode == LockGovernance && !bypassGovernance:
				lv.Mode, lv.Until = mode, until
			}
		}
		if lv.LegalHold || lv.Mode != "" {
			locked = append(locked, lv)
		}
	}
	if len(locked) > 0 {
		return &LockedError{AppID: appID, OrderNo: orderNo, Versions: locked}
	}
	return nil
}

// PurgeObjects deletes every version (and delete marker) under the order's
// folder with DeleteObjects, at most 1000 a call, bypassing GOVERNANCE
// retention when asked; the manifest's versions go last, once nothing else
// is left, so that a purge interrupted half-way and run again still has
// the hashes. It reads the manifest first to give each deleted version the
// manifest's SHA-256 (the latest version of each file it lists; the
// manifest's own from its bytes). It lists the folder again until nothing
// is left.
//
// It returns what this run deleted (delete markers, which hold no data,
// are removed but not listed), also on error: a run after an interruption
// finishes the job and returns only what it deleted. Versions
// DeleteObjects refused come back as a *DeleteError, and then the
// manifest is kept. Call PurgeCheck first: a locked version is refused
// here only after the others are gone.
func (s *S3) PurgeObjects(ctx context.Context, appID, orderNo string, bypassGovernance bool) ([]DeletedObject, error) {
	return s.purgeObjects(ctx, appID, orderNo, bypassGovernance, 0, maxDeleteBatch)
}

func (s *S3) purgeObjects(ctx context.Context, appID, orderNo string, bypass bool, pageSize int32, batch int) ([]DeletedObject, error) {
	if err := checkIDs(appID, orderNo); err != nil {
		return nil, err
	}
	folder := s.folder(appID, orderNo)
	manifestKey := folder + ManifestName
	sums := map[string]string{}
	m, err := s.GetManifest(ctx, appID, orderNo)
	switch {
	case err == nil:
		for _, f := range m.Files {
			sums[f.Key] = f.SHA256
		}
	case errors.Is(err, ErrNotFound), errors.Is(err, ErrInvalidManifest):
		// Nothing to take hashes from; the purge goes on, a deletion
		// request does not wait for a readable manifest.
	default:
		return nil, err
	}

	var deleted []DeletedObject
	for round := 0; round < maxPurgeRounds; round++ {
		vs, err := s.listVersions(ctx, folder, pageSize)
		if err != nil {
			return deleted, err
		}
		var files, manifests []version
		for _, v := range vs {
			if v.Key == manifestKey {
				manifests = append(manifests, v)
			} else {
				files = append(files, v)
			}
		}
		todo := files
		if len(todo) == 0 {
			todo = manifests
		}
		if len(todo) == 0 {
			return deleted, nil
		}
		for _, v := range todo {
			if v.Key == manifestKey && !v.DeleteMarker {
				if sum, err := s.versionSHA256(ctx, v); err == nil {
					sums[v.Key+"\x00"+v.VersionID] = sum
				}
			}
		}
		got, err := s.deleteVersions(ctx, todo, bypass, batch)
		for _, v := range got {
			if v.DeleteMarker {
				continue
			}
			d := DeletedObject{Key: v.Key, VersionID: v.VersionID, Size: v.Size}
			if sum, ok := sums[v.Key+"\x00"+v.VersionID]; ok {
				d.SHA256 = sum
			} else if v.Latest {
				d.SHA256 = sums[v.Key]
			}
			deleted = append(deleted, d)
		}
		if err != nil {
			return deleted, err
		}
	}
	return deleted, fmt.Errorf("storage: objects keep appearing under %s after %d rounds of deletion", folder, maxPurgeRounds)
}

// versionSHA256 hashes one small object version (a manifest).
func (s *S3) versionSHA256(ctx context.Context, v version) (string, error) {
	in := &s3.GetObjectInput{Bucket: &s.cfg.Bucket, Key: &v.Key}
	if v.VersionID != "" && v.VersionID != "null" {
		in.VersionId = aws.String(v.VersionID)
	}
	out, err := s.client.GetObject(ctx, in)
	if err != nil {
		return "", err
	}
	defer out.Body.Close()
	h := sha256.New()
	if _, err := io.Copy(h, io.LimitReader(out.Body, maxManifestSize+1)); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// deleteVersions deletes vs with DeleteObjects, batch at a time, and
// returns those the server reports deleted; the ones it refused come back
// as a *DeleteError after every batch was tried.
func (s *S3) deleteVersions(ctx context.Context, vs []version, bypass bool, batch int) ([]version, error) {
	var deleted []version
	var failed []FailedDelete
	for start := 0; start < len(vs); start += batch {
		chunk := vs[start:min(start+batch, len(vs))]
		ids := make([]types.ObjectIdentifier, len(chunk))
		byID := make(map[string]version, len(chunk))
		for i, v := range chunk {
			ids[i] = types.ObjectIdentifier{Key: aws.String(v.Key)}
			if v.VersionID != "" {
				ids[i].VersionId = aws.String(v.VersionID)
			}
			byID[v.Key+"\x00"+v.VersionID] = v
		}
		in := &s3.DeleteObjectsInput{Bucket: &s.cfg.Bucket, Delete: &types.Delete{Objects: ids, Quiet: aws.Bool(false)}}
		if bypass {
			in.BypassGovernanceRetention = aws.Bool(true)
		}
		out, err := s.client.DeleteObjects(ctx, in)
		if err != nil {
			return deleted, fmt.Errorf("storage: delete %d object version(s): %w", len(chunk), err)
		}
		for _, d := range out.Deleted {
			if id, ok := match(byID, aws.ToString(d.Key), aws.ToString(d.VersionId)); ok {
				deleted = append(deleted, byID[id])
				delete(byID, id)
			}
		}
		for _, e := range out.Errors {
			failed = append(failed, FailedDelete{Key: aws.ToString(e.Key), VersionID: aws.ToString(e.VersionId), Code: aws.ToString(e.Code), Message: aws.ToString(e.Message)})
			if id, ok := match(byID, aws.ToString(e.Key), aws.ToString(e.VersionId)); ok {
				delete(byID, id)
			}
		}
		// A version in neither list: the server said nothing of it. The
		// next listing shows whether it is gone.
	}
	if len(failed) > 0 {
		return deleted, &DeleteError{Failed: failed}
	}
	return deleted, nil
}

// match finds the entry of pending a DeleteObjects answer names: by key
// and version, or by key alone when the server named the version
// otherwise (left it out, or "null" for "") and only one version of the
// key is pending.
func match(pending map[string]version, key, versionID string) (string, bool) {
	id := key + "\x00" + versionID
	if _, ok := pending[id]; ok {
		return id, true
	}
	var found string
	n := 0
	for id, v := range pending {
		if v.Key == key {
			found, n = id, n+1
		}
	}
	return found, n == 1
}
