package storage_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go/middleware"

	"github.com/facesync/facesync/storage"
	"github.com/facesync/facesync/storage/storagetest"
)

var (
	jpegBytes = append([]byte{0xFF, 0xD8, 0xFF, 0xE0}, bytes.Repeat([]byte("photo"), 100)...)
	mp4Bytes  = append([]byte{0, 0, 0, 0x18, 'f', 't', 'y', 'p'}, bytes.Repeat([]byte("video"), 300)...)
)

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func newSink(t *testing.T, client *s3.Client, cfg storage.Config) *storage.S3 {
	t.Helper()
	s, err := storage.NewS3(client, cfg)
	if err != nil {
		t.Fatalf("NewS3(%+v): %v", cfg, err)
	}
	return s
}

// storeOrder stores a photo and a video through the sink and then the
// manifest, as the worker does, and returns the files.
func storeOrder(t *testing.T, ctx context.Context, sink *storage.S3, app, order string) []storage.File {
	t.Helper()
	var files []storage.File
	for kind, data := range map[string][]byte{storage.KindPhoto: jpegBytes, storage.KindVideo: mp4Bytes} {
		f, err := sink.PutFile(ctx, app, order, kind, bytes.NewReader(data))
		if err != nil {
			t.Fatalf("PutFile(%s): %v", kind, err)
		}
		files = append(files, f)
	}
	sort.Slice(files, func(i, j int) bool { return files[i].Kind < files[j].Kind })
	m := &storage.Manifest{}
	m.AppID, m.OrderNo, m.Files = app, order, files
	if _, err := sink.PutManifest(ctx, m); err != nil {
		t.Fatalf("PutManifest: %v", err)
	}
	return files
}

func getObject(t *testing.T, ctx context.Context, c *s3.Client, bucket, key string) []byte {
	t.Helper()
	out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: &bucket, Key: &key})
	if err != nil {
		t.Fatalf("GetObject(%s): %v", key, err)
	}
	defer out.Body.Close()
	b, err := io.ReadAll(out.Body)
	if err != nil {
		t.Fatalf("read %s: %v", key, err)
	}
	return b
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// TestPurgeStoredOrder purges a stored order from an unversioned and from
// a versioned bucket (a photo stored twice, a delete marker), and checks
// that no version is left, every deleted version is listed, the manifest
// last, with the manifest's hashes, and that another order is untouched.
func TestPurgeStoredOrder(t *testing.T) {
	t.Parallel()
	srv := storagetest.StartServer(t)
	for _, versioned := range []bool{false, true} {
		t.Run(map[bool]string{false: "unversioned", true: "versioned"}[versioned], func(t *testing.T) {
			ctx := testCtx(t)
			bucket := srv.Bucket
			if versioned {
				bucket = srv.NewBucket(t, true)
			}
			sink := newSink(t, srv.Client(), storage.Config{Bucket: bucket})
			raw := srv.Client()
			wantVersions := 3
			if versioned {
				// A retried photo upload: an older version of the key.
				if _, err := sink.PutFile(ctx, "app1", "order1", storage.KindPhoto, bytes.NewReader(append(slices.Clone(jpegBytes), 'x'))); err != nil {
					t.Fatalf("PutFile: %v", err)
				}
				// An object removed by key: a version and a delete marker.
				k := "evidence/app1/order1/stray.bin"
				if _, err := raw.PutObject(ctx, &s3.PutObjectInput{Bucket: &bucket, Key: &k, Body: strings.NewReader("x")}); err != nil {
					t.Fatalf("PutObject: %v", err)
				}
				if _, err := raw.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &bucket, Key: &k}); err != nil {
					t.Fatalf("DeleteObject: %v", err)
				}
				wantVersions = 5
			}
			files := storeOrder(t, ctx, sink, "app1", "order1")
			storeOrder(t, ctx, sink, "app1", "order2")
			manifest := getObject(t, ctx, raw, bucket, "evidence/app1/order1/manifest.json")

			if err := sink.PurgeCheck(ctx, "app1", "order1", false); err != nil {
				t.Fatalf("PurgeCheck: %v", err)
			}
			deleted, err := sink.PurgeObjects(ctx, "app1", "order1", false)
			if err != nil {
				t.Fatalf("PurgeObjects: %v", err)
			}
			if left := storagetest.Versions(t, raw, bucket, "evidence/app1/order1/"); len(left) != 0 {
				t.Errorf("after purge, versions left: %v", left)
			}
			if len(deleted) != wantVersions {
				t.Errorf("PurgeObjects deleted %d versions, want %d: %+v", len(deleted), wantVersions, deleted)
			}
			if last := deleted[len(deleted)-1]; last.Key != "evidence/app1/order1/manifest.json" || last.SHA256 != sha(manifest) || last.Size != int64(len(manifest)) {
				t.Errorf("last deleted = %+v, want the manifest with sha256 %s and size %d", last, sha(manifest), len(manifest))
			}
			for _, f := range files {
				var got []storage.DeletedObject
				for _, d := range deleted {
					if d.Key == f.Key && d.SHA256 == f.SHA256 && d.Size == f.Size {
						got = append(got, d)
					}
				}
				if len(got) != 1 {
					t.Errorf("deleted %+v: want one entry for %s with the manifest's sha256 %s and size %d", deleted, f.Key, f.SHA256, f.Size)
				}
			}
			for _, d := range deleted {
				if versioned && (d.VersionID == "" || d.VersionID == "null") {
					t.Errorf("deleted %+v: want its version id in a versioned bucket", d)
				}
			}
			if left := storagetest.Versions(t, raw, bucket, "evidence/app1/order2/"); len(left) != 3 {
				t.Errorf("another order's versions = %v, want its 3 untouched", left)
			}
			// Nothing left: a purge run again deletes nothing, successfully.
			again, err := sink.PurgeObjects(ctx, "app1", "order1", false)
			if err != nil || len(again) != 0 {
				t.Errorf("PurgeObjects again = %+v, %v; want nothing, nil", again, err)
			}
		})
	}
}

// TestReceipt writes a receipt for a purge and checks its key, that it
// holds the hashes, exactly the contract's fields (so no name, id number or
// score), and that receipts are never overwritten nor kept under the
// evidence prefix.
func TestReceipt(t *testing.T) {
	t.Parallel()
	srv := storagetest.StartServer(t)
	ctx := testCtx(t)
	at := time.Date(2026, 12, 1, 14, 30, 5, 123e6, time.UTC)
	sink := newSink(t, srv.Client(), storage.Config{Bucket: srv.Bucket, NowFunc: func() time.Time { return at }})
	files := storeOrder(t, ctx, sink, "app1", "order1")
	deleted, err := sink.PurgeObjects(ctx, "app1", "order1", false)
	if err != nil {
		t.Fatalf("PurgeObjects: %v", err)
	}
	r := storage.Receipt{AppID: "app1", OrderNo: "order1", Reason: "subject's request #42", Operator: "dpo", Objects: deleted}
	key, err := sink.PutReceipt(ctx, "", r)
	if err != nil {
		t.Fatalf("PutReceipt: %v", err)
	}
	if want := "receipts/app1/order1/2026-12-01T14:30:05.123Z.json"; key != want {
		t.Errorf("PutReceipt key = %q, want %q", key, want)
	}
	raw := getObject(t, ctx, srv.Client(), srv.Bucket, key)
	t.Logf("receipt %s:\n%s", key, raw)
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("receipt is not JSON: %v", err)
	}
	if got, want := sortedKeys(doc), []string{"app_id", "objects", "operator", "order_no", "purged_at", "reason"}; !slices.Equal(got, want) {
		t.Errorf("receipt fields = %v, want exactly %v", got, want)
	}
	var objs []map[string]any
	if err := json.Unmarshal(doc["objects"], &objs); err != nil {
		t.Fatalf("receipt objects: %v", err)
	}
	if len(objs) != 3 {
		t.Fatalf("receipt lists %d objects, want 3", len(objs))
	}
	for _, o := range objs {
		if got, want := sortedKeys(o), []string{"key", "sha256", "size", "version_id"}; !slices.Equal(got, want) {
			t.Errorf("receipt object fields = %v, want exactly %v", got, want)
		}
	}
	for _, f := range files {
		if !bytes.Contains(raw, []byte(`"sha256": "`+f.SHA256+`"`)) {
			t.Errorf("receipt lacks %s's sha256 %s", f.Key, f.SHA256)
		}
	}
	var back struct {
		PurgedAt string `json:"purged_at"`
	}
	_ = json.Unmarshal(raw, &back)
	if back.PurgedAt != "2026-12-01T14:30:05.123Z" {
		t.Errorf("purged_at = %q, want 2026-12-01T14:30:05.123Z", back.PurgedAt)
	}

	if _, err := sink.PutReceipt(ctx, "", r); !errors.Is(err, storage.ErrReceiptExists) {
		t.Errorf("PutReceipt at the same time again = %v, want ErrReceiptExists", err)
	}
	empty := storage.Receipt{AppID: "app1", OrderNo: "order9", Reason: "r", Operator: "o"}
	key, err = sink.PutReceipt(ctx, "audit/receipts/", empty)
	if err != nil {
		t.Fatalf("PutReceipt(empty): %v", err)
	}
	if raw := getObject(t, ctx, srv.Client(), srv.Bucket, key); !bytes.Contains(raw, []byte(`"objects": []`)) {
		t.Errorf("receipt of an order with nothing left = %s, want \"objects\": []", raw)
	}
	for _, bad := range []struct {
		prefix string
		r      storage.Receipt
	}{
		{"evidence/receipts/", r},
		{"evidence/", r},
		{"/receipts/", r},
		{"receipts", r},
		{"", storage.Receipt{AppID: "app1", OrderNo: "order1", Operator: "o"}},
		{"", storage.Receipt{AppID: "app1", OrderNo: "order1", Reason: "r"}},
		{"", storage.Receipt{AppID: "app/1", OrderNo: "order1", Reason: "r", Operator: "o"}},
	} {
		if key, err := sink.PutReceipt(ctx, bad.prefix, bad.r); err == nil {
			t.Errorf("PutReceipt(%q, %+v) = %q, nil; want an error", bad.prefix, bad.r, key)
		}
	}
}

func sortedKeys[V any](m map[string]V) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// TestPurgeCompliance: under COMPLIANCE retention nothing is deleted, and
// the refusal names each key and says why; bypassing governance changes
// nothing. PurgeObjects called regardless returns the server's per-key
// refusals and keeps the manifest.
func TestPurgeCompliance(t *testing.T) {
	t.Parallel()
	srv := storagetest.StartServer(t)
	ctx := testCtx(t)
	bucket := srv.NewBucket(t, true)
	sink := newSink(t, srv.Client(), storage.Config{Bucket: bucket, LockMode: storage.LockCompliance, LockDays: 1})
	storeOrder(t, ctx, sink, "app1", "order1")
	before := storagetest.Versions(t, srv.Client(), bucket, "evidence/app1/order1/")

	for _, bypass := range []bool{false, true} {
		err := sink.PurgeCheck(ctx, "app1", "order1", bypass)
		var le *storage.LockedError
		if !errors.As(err, &le) || !errors.Is(err, storage.ErrLocked) {
			t.Fatalf("PurgeCheck(bypass %v) = %v, want a *LockedError", bypass, err)
		}
		if len(le.Versions) != 3 {
			t.Errorf("LockedError lists %d versions, want 3: %v", len(le.Versions), err)
		}
		for _, name := range []string{"photo.jpg", "video.mp4", "manifest.json", "COMPLIANCE retention until", "no one can delete it"} {
			if !strings.Contains(err.Error(), name) {
				t.Errorf("refusal %q does not mention %q", err, name)
			}
		}
		t.Logf("refusal: %v", err)
	}
	if after := storagetest.Versions(t, srv.Client(), bucket, "evidence/app1/order1/"); !slices.Equal(after, before) {
		t.Errorf("after the refused check: %v, want %v", after, before)
	}

	deleted, err := sink.PurgeObjects(ctx, "app1", "order1", true)
	var de *storage.DeleteError
	if !errors.As(err, &de) || len(de.Failed) != 2 || len(deleted) != 0 {
		t.Fatalf("PurgeObjects under COMPLIANCE = %+v, %v; want nothing deleted and a *DeleteError for the 2 files", deleted, err)
	}
	if after := storagetest.Versions(t, srv.Client(), bucket, "evidence/app1/order1/"); !slices.Equal(after, before) {
		t.Errorf("after the refused purge: %v, want %v", after, before)
	}
}

// TestPurgeGovernance: GOVERNANCE retention refuses the purge unless
// bypassed, and bypassing deletes everything.
func TestPurgeGovernance(t *testing.T) {
	t.Parallel()
	srv := storagetest.StartServer(t)
	ctx := testCtx(t)
	bucket := srv.NewBucket(t, true)
	sink := newSink(t, srv.Client(), storage.Config{Bucket: bucket, LockMode: storage.LockGovernance, LockDays: 1})
	storeOrder(t, ctx, sink, "app1", "order1")

	err := sink.PurgeCheck(ctx, "app1", "order1", false)
	if !errors.Is(err, storage.ErrLocked) || !strings.Contains(err.Error(), "--bypass-governance") {
		t.Fatalf("PurgeCheck(no bypass) = %v, want a refusal that mentions --bypass-governance", err)
	}
	if err := sink.PurgeCheck(ctx, "app1", "order1", true); err != nil {
		t.Fatalf("PurgeCheck(bypass) = %v, want nil", err)
	}
	deleted, err := sink.PurgeObjects(ctx, "app1", "order1", true)
	if err != nil || len(deleted) != 3 {
		t.Fatalf("PurgeObjects(bypass) = %+v, %v; want 3 versions deleted", deleted, err)
	}
	if left := storagetest.Versions(t, srv.Client(), bucket, "evidence/app1/order1/"); len(left) != 0 {
		t.Errorf("after purge, versions left: %v", left)
	}
}

// TestPurgeLegalHold: a legal hold refuses the purge, bypass or not.
func TestPurgeLegalHold(t *testing.T) {
	t.Parallel()
	srv := storagetest.StartServer(t)
	ctx := testCtx(t)
	bucket := srv.NewBucket(t, true)
	sink := newSink(t, srv.Client(), storage.Config{Bucket: bucket})
	files := storeOrder(t, ctx, sink, "app1", "order1")
	if _, err := srv.Client().PutObjectLegalHold(ctx, &s3.PutObjectLegalHoldInput{
		Bucket: &bucket, Key: aws.String(files[0].Key),
		LegalHold: &types.ObjectLockLegalHold{Status: types.ObjectLockLegalHoldStatusOn},
	}); err != nil {
		t.Fatalf("PutObjectLegalHold: %v", err)
	}
	err := sink.PurgeCheck(ctx, "app1", "order1", true)
	var le *storage.LockedError
	if !errors.As(err, &le) || len(le.Versions) != 1 || le.Versions[0].Key != files[0].Key || !strings.Contains(err.Error(), "legal hold") {
		t.Fatalf("PurgeCheck = %v, want a refusal naming %s and its legal hold", err, files[0].Key)
	}
}

// TestPurgeInterrupted: a purge that stopped after deleting some objects
// (one deleted by hand; or the manifest's deletion failing), run again,
// finishes and returns only what it deleted, still with the manifest's
// hashes.
func TestPurgeInterrupted(t *testing.T) {
	t.Parallel()
	srv := storagetest.StartServer(t)
	ctx := testCtx(t)
	bucket := srv.NewBucket(t, true)
	raw := srv.Client()

	t.Run("file deleted before", func(t *testing.T) {
		sink := newSink(t, raw, storage.Config{Bucket: bucket})
		files := storeOrder(t, ctx, sink, "app1", "order1")
		out, err := raw.ListObjectVersions(ctx, &s3.ListObjectVersionsInput{Bucket: &bucket, Prefix: aws.String(files[0].Key)})
		if err != nil || len(out.Versions) != 1 {
			t.Fatalf("ListObjectVersions(%s) = %v, %v", files[0].Key, out, err)
		}
		if _, err := raw.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &bucket, Key: out.Versions[0].Key, VersionId: out.Versions[0].VersionId}); err != nil {
			t.Fatalf("DeleteObject: %v", err)
		}
		deleted, err := sink.PurgeObjects(ctx, "app1", "order1", false)
		if err != nil {
			t.Fatalf("PurgeObjects: %v", err)
		}
		if len(deleted) != 2 || deleted[0].Key != files[1].Key || deleted[0].SHA256 != files[1].SHA256 || deleted[1].Key != "evidence/app1/order1/manifest.json" {
			t.Errorf("PurgeObjects = %+v, want %s with sha256 %s, then the manifest", deleted, files[1].Key, files[1].SHA256)
		}
		if left := storagetest.Versions(t, raw, bucket, "evidence/app1/order1/"); len(left) != 0 {
			t.Errorf("versions left: %v", left)
		}
	})

	t.Run("manifest deletion failed", func(t *testing.T) {
		manifestKey := "evidence/app1/order2/manifest.json"
		failing := srv.Client(func(o *s3.Options) {
			o.APIOptions = append(o.APIOptions, func(st *middleware.Stack) error {
				return st.Initialize.Add(middleware.InitializeMiddlewareFunc("crash-before-manifest", func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
					if d, ok := in.Parameters.(*s3.DeleteObjectsInput); ok {
						for _, o := range d.Delete.Objects {
							if aws.ToString(o.Key) == manifestKey {
								return middleware.InitializeOutput{}, middleware.Metadata{}, errors.New("injected: connection lost")
							}
						}
					}
					return next.HandleInitialize(ctx, in)
				}), middleware.Before)
			})
		})
		sink := newSink(t, raw, storage.Config{Bucket: bucket})
		files := storeOrder(t, ctx, sink, "app1", "order2")
		first, err := newSink(t, failing, storage.Config{Bucket: bucket}).PurgeObjects(ctx, "app1", "order2", false)
		if err == nil || len(first) != 2 {
			t.Fatalf("interrupted PurgeObjects = %+v, %v; want the 2 files and an error", first, err)
		}
		if left := storagetest.Versions(t, raw, bucket, "evidence/app1/order2/"); len(left) != 1 || !strings.HasPrefix(left[0], manifestKey+"@") {
			t.Fatalf("after the interruption: %v, want the manifest alone", left)
		}
		second, err := sink.PurgeObjects(ctx, "app1", "order2", false)
		if err != nil || len(second) != 1 || second[0].Key != manifestKey || second[0].SHA256 == "" {
			t.Fatalf("PurgeObjects run again = %+v, %v; want the manifest alone, with its hash", second, err)
		}
		if left := storagetest.Versions(t, raw, bucket, "evidence/app1/order2/"); len(left) != 0 {
			t.Errorf("versions left: %v", left)
		}
		for i, f := range files {
			if first[i].Key != f.Key || first[i].SHA256 != f.SHA256 {
				t.Errorf("first run deleted %+v, want %s with sha256 %s", first[i], f.Key, f.SHA256)
			}
		}
	})
}

// TestPurgePaging purges a folder of many versions with small listing
// pages and DeleteObjects batches: every version goes, no call carries
// more than a batch.
func TestPurgePaging(t *testing.T) {
	t.Parallel()
	srv := storagetest.StartServer(t)
	ctx := testCtx(t)
	bucket := srv.NewBucket(t, true)
	raw := srv.Client()
	for i := range 7 {
		k := "evidence/app1/order1/f" + string(rune('a'+i))
		for range 2 {
			if _, err := raw.PutObject(ctx, &s3.PutObjectInput{Bucket: &bucket, Key: &k, Body: strings.NewReader("x")}); err != nil {
				t.Fatalf("PutObject: %v", err)
			}
		}
	}
	var calls, biggest atomic.Int64
	counting := srv.Client(func(o *s3.Options) {
		o.APIOptions = append(o.APIOptions, func(st *middleware.Stack) error {
			return st.Initialize.Add(middleware.InitializeMiddlewareFunc("count", func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
				if d, ok := in.Parameters.(*s3.DeleteObjectsInput); ok {
					calls.Add(1)
					if n := int64(len(d.Delete.Objects)); n > biggest.Load() {
						biggest.Store(n)
					}
				}
				return next.HandleInitialize(ctx, in)
			}), middleware.Before)
		})
	})
	sink := newSink(t, counting, storage.Config{Bucket: bucket})
	deleted, err := sink.PurgeObjectsPaged(ctx, "app1", "order1", false, 2, 3)
	if err != nil || len(deleted) != 14 {
		t.Fatalf("PurgeObjects = %d deleted, %v; want 14", len(deleted), err)
	}
	if calls.Load() < 5 || biggest.Load() > 3 {
		t.Errorf("DeleteObjects calls = %d with at most %d keys, want at least 5 of at most 3", calls.Load(), biggest.Load())
	}
	if left := storagetest.Versions(t, raw, bucket, "evidence/app1/order1/"); len(left) != 0 {
		t.Errorf("versions left: %v", left)
	}
}
