package storagetest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/middleware"

	"github.com/facesync/facesync/storage"
)

// Capabilities says which server-side guarantees the server behind a sink
// gives, so that the suite runs only the cases the server can pass (a fake
// server that ignores checksums, say). versitygw gives all of them.
type Capabilities struct {
	// Checksums: the server verifies the checksums sent with objects and
	// parts and refuses a mismatch.
	Checksums bool
	// ConditionalWrites: the server honours If-None-Match: * on PutObject.
	ConditionalWrites bool
	// ObjectLock: buckets may be created with object lock, and retention is
	// enforced.
	ObjectLock bool
}

// Options is what a case asks of the sink it gets.
type Options struct {
	// Config for the sink; the factory sets Bucket.
	Config storage.Config
	// ObjectLock asks for a bucket with object lock enabled.
	ObjectLock bool
	// ClientOptions apply to the S3 client the sink uses; the suite uses
	// them to watch and corrupt requests.
	ClientOptions []func(*s3.Options)
}

// Setup is a sink under test and raw access to the bucket it writes to.
type Setup struct {
	Sink storage.Sink
	// Client reaches Bucket directly, without the case's ClientOptions, to
	// inspect and tamper with what the sink stored.
	Client *s3.Client
	Bucket string
	// Prefix is the sink's key prefix (Config.Prefix or its default).
	Prefix string
}

// NewFunc returns a sink on a bucket of its own, built with o.
type NewFunc func(t *testing.T, o Options) Setup

// Run is the conformance suite for storage.Sink implementations on an
// S3-compatible server. Cases run in parallel, each on a sink (and bucket)
// of its own; cases that need a capability caps lacks are not run.
func Run(t *testing.T, caps Capabilities, newSink NewFunc) {
	s := suite{caps: caps, newSink: newSink}
	cases := []struct {
		name string
		run  func(t *testing.T)
		on   bool
	}{
		{"RoundTrip", s.roundTrip, true},
		{"ContentTypes", s.contentTypes, true},
		{"RefusesEmpty", s.refusesEmpty, true},
		{"RefusesBadIDs", s.refusesBadIDs, true},
		{"ReaderFails", s.readerFails, true},
		{"Cancelled", s.cancelled, true},
		{"Ping", s.ping, true},
		{"Manifest", s.manifest, true},
		{"ManifestNeedsFiles", s.manifestNeedsFiles, true},
		{"Verify", s.verify, true},
		{"Encryption", s.encryption, true},
		{"CorruptPartOnWire", s.corruptOnWire, caps.Checksums},
		{"CorruptPartInBuffer", s.corruptInBuffer, caps.Checksums},
		{"ManifestOnce", s.manifestOnce, caps.ConditionalWrites},
		{"Retention", s.retention, caps.ObjectLock},
		{"RetentionChecksumMismatch", s.retentionMismatch, caps.ObjectLock && caps.Checksums},
	}
	for _, c := range cases {
		if !c.on {
			continue
		}
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			c.run(t)
		})
	}
}

type suite struct {
	caps    Capabilities
	newSink NewFunc
}

const (
	mib     = 1 << 20
	appID   = "TIDA0001"
	orderNo = "ord-0001_x"
)

// Leading bytes by which the sink names files.
var (
	headJPEG = []byte{0xFF, 0xD8, 0xFF, 0xE0, 0, 0x10, 'J', 'F', 'I', 'F', 0, 1}
	headPNG  = []byte{0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n', 0, 0, 0, 0x0D}
	headMP4  = []byte{0, 0, 0, 0x20, 'f', 't', 'y', 'p', 'i', 's', 'o', 'm'}
)

// content returns n bytes starting with head, the rest a pattern whose
// period (about 1 MB) does not divide the part size, so a swapped or
// repeated part would show.
func content(head []byte, n int) []byte {
	b := make([]byte, n)
	copy(b, head)
	for i := len(head); i < n; i++ {
		b[i] = byte(i*7 + i/4093)
	}
	return b
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func (s suite) setup(t *testing.T, o Options) Setup {
	t.Helper()
	if o.Config.PartSize == 0 {
		o.Config.PartSize = storage.MinPartSize
	}
	su := s.newSink(t, o)
	if su.Prefix == "" {
		su.Prefix = storage.DefaultPrefix
	}
	return su
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func (su Setup) folder() string { return su.Prefix + appID + "/" + orderNo + "/" }

// get reads an object back whole (test sizes only).
func (su Setup) get(t *testing.T, key string) ([]byte, string) {
	t.Helper()
	out, err := su.Client.GetObject(ctxT(t), &s3.GetObjectInput{Bucket: &su.Bucket, Key: &key})
	if err != nil {
		t.Fatalf("GetObject(%q): %v", key, err)
	}
	defer out.Body.Close()
	b, err := io.ReadAll(out.Body)
	if err != nil {
		t.Fatalf("read %q: %v", key, err)
	}
	return b, aws.ToString(out.ContentType)
}

func (su Setup) put(t *testing.T, key string, b []byte) {
	t.Helper()
	if _, err := su.Client.PutObject(ctxT(t), &s3.PutObjectInput{Bucket: &su.Bucket, Key: &key, Body: bytes.NewReader(b)}); err != nil {
		t.Fatalf("PutObject(%q): %v", key, err)
	}
}

func (su Setup) del(t *testing.T, key string) {
	t.Helper()
	if _, err := su.Client.DeleteObject(ctxT(t), &s3.DeleteObjectInput{Bucket: &su.Bucket, Key: &key}); err != nil {
		t.Fatalf("DeleteObject(%q): %v", key, err)
	}
}

// assertEmpty fails the test when the bucket holds any object or any
// unfinished multipart upload.
func (su Setup) assertEmpty(t *testing.T) {
	t.Helper()
	ctx := ctxT(t)
	objs, err := su.Client.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: &su.Bucket})
	if err != nil {
		t.Fatalf("ListObjectsV2: %v", err)
	}
	for _, o := range objs.Contents {
		t.Errorf("object %q left in the bucket, want none", aws.ToString(o.Key))
	}
	ups, err := su.Client.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: &su.Bucket})
	if apiCode(err) == "NoSuchUpload" {
		// gofakes3's answer for a bucket that never had an upload.
		return
	}
	if err != nil {
		t.Fatalf("ListMultipartUploads: %v", err)
	}
	for _, u := range ups.Uploads {
		t.Errorf("multipart upload %q of %q left, want none", aws.ToString(u.UploadId), aws.ToString(u.Key))
	}
}

func (s suite) roundTrip(t *testing.T) {
	su := s.setup(t, Options{})
	for _, n := range []int{3, 100, 5*mib - 1, 5 * mib, 5*mib + 1, 12 * mib} {
		data := content(headJPEG, n)
		f, err := su.Sink.PutFile(ctxT(t), appID, orderNo, storage.KindPhoto, bytes.NewReader(data))
		if err != nil {
			t.Fatalf("PutFile(%d bytes): %v", n, err)
		}
		want := storage.File{Kind: storage.KindPhoto, Key: su.folder() + "photo.jpg", ContentType: storage.TypeJPEG, Size: int64(n), SHA256: sha(data)}
		if f != want {
			t.Errorf("PutFile(%d bytes) = %+v, want %+v", n, f, want)
		}
		got, ct := su.get(t, f.Key)
		if !bytes.Equal(got, data) {
			t.Errorf("object after PutFile(%d bytes): %d bytes, sha256 %s, want the %d bytes put, sha256 %s", n, len(got), sha(got), n, want.SHA256)
		}
		if ct != storage.TypeJPEG {
			t.Errorf("object Content-Type after PutFile(%d bytes) = %q, want %q", n, ct, storage.TypeJPEG)
		}
	}
}

func (s suite) contentTypes(t *testing.T) {
	su := s.setup(t, Options{})
	tests := []struct {
		kind     string
		data     []byte
		name, ct string
	}{
		{storage.KindPhoto, content(headJPEG, 1000), "photo.jpg", storage.TypeJPEG},
		{storage.KindPhoto, content(headPNG, 1000), "photo.png", storage.TypePNG},
		{storage.KindPhoto, []byte("GIF89a not a jpeg"), "photo.bin", storage.TypeBinary},
		{storage.KindPhoto, []byte{0xFF, 0xD8}, "photo.bin", storage.TypeBinary},
		{storage.KindPhoto, content(headMP4, 1000), "photo.bin", storage.TypeBinary},
		{storage.KindVideo, content(headMP4, 1000), "video.mp4", storage.TypeMP4},
		{storage.KindVideo, headMP4[:8], "video.mp4", storage.TypeMP4},
		{storage.KindVideo, content(headJPEG, 1000), "video.bin", storage.TypeBinary},
		{storage.KindVideo, []byte{0}, "video.bin", storage.TypeBinary},
	}
	for _, tt := range tests {
		f, err := su.Sink.PutFile(ctxT(t), appID, orderNo, tt.kind, bytes.NewReader(tt.data))
		if err != nil {
			t.Fatalf("PutFile(%s, % x...): %v", tt.kind, tt.data[:min(len(tt.data), 8)], err)
		}
		if f.Key != su.folder()+tt.name || f.ContentType != tt.ct {
			t.Errorf("PutFile(%s, % x...) = %s %s, want %s %s", tt.kind, tt.data[:min(len(tt.data), 8)], f.Key, f.ContentType, su.folder()+tt.name, tt.ct)
		}
		got, ct := su.get(t, f.Key)
		if !bytes.Equal(got, tt.data) || ct != tt.ct {
			t.Errorf("object %s = %d bytes, %q, want %d bytes, %q", f.Key, len(got), ct, len(tt.data), tt.ct)
		}
	}
}

func (s suite) refusesEmpty(t *testing.T) {
	su := s.setup(t, Options{})
	if f, err := su.Sink.PutFile(ctxT(t), appID, orderNo, storage.KindVideo, strings.NewReader("")); err == nil {
		t.Errorf("PutFile(empty) = %+v, want an error", f)
	}
	su.assertEmpty(t)
}

func (s suite) refusesBadIDs(t *testing.T) {
	su := s.setup(t, Options{})
	ids := []struct{ app, order string }{
		{"", orderNo},
		{"../x", orderNo},
		{appID, "a/b"},
		{appID, ""},
		{appID, strings.Repeat("o", 33)},
		{appID, "ord 1"},
		{"TIDA\u00e9", orderNo},
	}
	for _, id := range ids {
		if f, err := su.Sink.PutFile(ctxT(t), id.app, id.order, storage.KindPhoto, bytes.NewReader(headJPEG)); err == nil {
			t.Errorf("PutFile(%q, %q) = %+v, want an error", id.app, id.order, f)
		}
		if k, err := su.Sink.ManifestKey(id.app, id.order); err == nil {
			t.Errorf("ManifestKey(%q, %q) = %q, want an error", id.app, id.order, k)
		}
		if m, err := su.Sink.GetManifest(ctxT(t), id.app, id.order); err == nil || errors.Is(err, storage.ErrNotFound) {
			t.Errorf("GetManifest(%q, %q) = %+v, %v, want an error other than not found", id.app, id.order, m, err)
		}
		if r, err := su.Sink.Verify(ctxT(t), id.app, id.order); err == nil || errors.Is(err, storage.ErrNotFound) {
			t.Errorf("Verify(%q, %q) = %+v, %v, want an error other than not found", id.app, id.order, r, err)
		}
		m := manifestFor(storage.File{Kind: storage.KindPhoto, Key: su.folder() + "photo.jpg", ContentType: storage.TypeJPEG, Size: 1, SHA256: sha(nil)})
		m.AppID, m.OrderNo = id.app, id.order
		if k, err := su.Sink.PutManifest(ctxT(t), m); err == nil {
			t.Errorf("PutManifest(%q, %q) = %q, want an error", id.app, id.order, k)
		}
	}
	for _, kind := range []string{"", "audio", "Photo", "../photo"} {
		if f, err := su.Sink.PutFile(ctxT(t), appID, orderNo, kind, bytes.NewReader(headJPEG)); err == nil {
			t.Errorf("PutFile(kind %q) = %+v, want an error", kind, f)
		}
	}
	su.assertEmpty(t)
}

// failingReader returns data, then err instead of EOF.
type failingReader struct {
	r   io.Reader
	err error
}

func (f *failingReader) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if err == io.EOF {
		return n, f.err
	}
	return n, err
}

func (s suite) readerFails(t *testing.T) {
	su := s.setup(t, Options{})
	errBoom := errors.New("provider connection reset")
	for _, n := range []int{100, 5 * mib, 7 * mib, 11 * mib} {
		r := &failingReader{r: bytes.NewReader(content(headMP4, n)), err: errBoom}
		f, err := su.Sink.PutFile(ctxT(t), appID, orderNo, storage.KindVideo, r)
		if !errors.Is(err, errBoom) {
			t.Errorf("PutFile(reader failing after %d bytes) = %+v, %v, want %v", n, f, err, errBoom)
		}
	}
	su.assertEmpty(t)
}

// cancellingReader cancels its context once it has given n bytes.
type cancellingReader struct {
	r      io.Reader
	n      int
	cancel context.CancelFunc
}

func (c *cancellingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n -= n
	if c.n <= 0 {
		c.cancel()
	}
	return n, err
}

func (s suite) cancelled(t *testing.T) {
	su := s.setup(t, Options{})
	for _, at := range []int{10, 3 * mib, 7 * mib, 16 * mib} {
		ctx, cancel := context.WithCancel(ctxT(t))
		r := &cancellingReader{r: bytes.NewReader(content(headMP4, 20*mib)), n: at, cancel: cancel}
		f, err := su.Sink.PutFile(ctx, appID, orderNo, storage.KindVideo, r)
		cancel()
		if !errors.Is(err, context.Canceled) {
			t.Errorf("PutFile(cancelled after %d bytes) = %+v, %v, want %v", at, f, err, context.Canceled)
		}
	}
	su.assertEmpty(t)
}

func (s suite) ping(t *testing.T) {
	su := s.setup(t, Options{})
	if err := su.Sink.Ping(ctxT(t)); err != nil {
		t.Errorf("Ping() = %v, want nil", err)
	}
}

func manifestFor(files ...storage.File) *storage.Manifest {
	return &storage.Manifest{
		AppID: appID, OrderNo: orderNo,
		Decision: decisionJSON(appID, orderNo, "passed", "请求成功"),
		Files:    files,
	}
}

// decisionJSON is a decision part as the worker writes it; storage treats
// it as opaque.
func decisionJSON(app, order, status, msg string) json.RawMessage {
	m, _ := json.Marshal(msg)
	return fmt.Appendf(nil, `{"app_id":%q,"order_no":%q,"status":%q,"code":"0","msg":%s,`+
		`"biz_seq_no":"22081020001184433106","transaction_time":"20180810150342","occurred_time":"20180810150152",`+
		`"live_rate":"100","similarity":"95.0","id_type":"01","id_no":"110***********1234","name":"张*",`+
		`"decided_at":"2026-11-28T01:02:03Z"}`, app, order, status, m)
}

// putSet stores a photo and a video and their manifest.
func putSet(t *testing.T, su Setup) (photo, video []byte, m *storage.Manifest) {
	t.Helper()
	photo, video = content(headJPEG, 48213), content(headMP4, 6*mib+17)
	pf, err := su.Sink.PutFile(ctxT(t), appID, orderNo, storage.KindPhoto, bytes.NewReader(photo))
	if err != nil {
		t.Fatalf("PutFile(photo): %v", err)
	}
	vf, err := su.Sink.PutFile(ctxT(t), appID, orderNo, storage.KindVideo, bytes.NewReader(video))
	if err != nil {
		t.Fatalf("PutFile(video): %v", err)
	}
	m = manifestFor(pf, vf)
	if _, err := su.Sink.PutManifest(ctxT(t), m); err != nil {
		t.Fatalf("PutManifest: %v", err)
	}
	return photo, video, m
}

func (s suite) manifest(t *testing.T) {
	su := s.setup(t, Options{})
	if m, err := su.Sink.GetManifest(ctxT(t), appID, orderNo); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("GetManifest(none stored) = %+v, %v, want %v", m, err, storage.ErrNotFound)
	}
	if r, err := su.Sink.Verify(ctxT(t), appID, orderNo); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("Verify(none stored) = %+v, %v, want %v", r, err, storage.ErrNotFound)
	}
	wantKey := su.folder() + storage.ManifestName
	if k, err := su.Sink.ManifestKey(appID, orderNo); k != wantKey || err != nil {
		t.Errorf("ManifestKey(%q, %q) = %q, %v, want %q", appID, orderNo, k, err, wantKey)
	}

	// A partial set: the photo came, the video never did.
	data := content(headPNG, 1234)
	f, err := su.Sink.PutFile(ctxT(t), appID, orderNo, storage.KindPhoto, bytes.NewReader(data))
	if err != nil {
		t.Fatalf("PutFile: %v", err)
	}
	m := manifestFor(f)
	key, err := su.Sink.PutManifest(ctxT(t), m)
	if key != wantKey || err != nil {
		t.Fatalf("PutManifest() = %q, %v, want %q", key, err, wantKey)
	}
	got, err := su.Sink.GetManifest(ctxT(t), appID, orderNo)
	if err != nil {
		t.Fatalf("GetManifest: %v", err)
	}
	if _, err := time.Parse(time.RFC3339, got.FetchedAt); err != nil {
		t.Errorf("GetManifest().FetchedAt = %q, want RFC 3339 (set by PutManifest): %v", got.FetchedAt, err)
	}
	want := *m
	want.FetchedAt = got.FetchedAt
	if !reflect.DeepEqual(*got, want) {
		t.Errorf("GetManifest() = %+v, want %+v", *got, want)
	}

	raw, ct := su.get(t, key)
	if ct != "application/json" {
		t.Errorf("manifest Content-Type = %q, want application/json", ct)
	}
	if order := jsonKeys(t, raw); order != manifestKeyOrder {
		t.Errorf("manifest keys = %s, want %s", order, manifestKeyOrder)
	}
}

// manifestKeyOrder is the contract's field order (section 6).
const manifestKeyOrder = "app_id order_no status code msg biz_seq_no transaction_time occurred_time live_rate similarity id_type id_no name decided_at fetched_at files"

// jsonKeys lists the top-level keys of a JSON object in order.
func jsonKeys(t *testing.T, raw []byte) string {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(raw))
	if _, err := dec.Token(); err != nil {
		t.Fatalf("manifest is not JSON: %v", err)
	}
	var keys []string
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			t.Fatalf("manifest is not JSON: %v", err)
		}
		keys = append(keys, tok.(string))
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			t.Fatalf("manifest is not JSON: %v", err)
		}
	}
	return strings.Join(keys, " ")
}

func (s suite) manifestNeedsFiles(t *testing.T) {
	su := s.setup(t, Options{})
	data := content(headJPEG, 500)
	stored, err := su.Sink.PutFile(ctxT(t), appID, orderNo, storage.KindPhoto, bytes.NewReader(data))
	if err != nil {
		t.Fatalf("PutFile: %v", err)
	}
	notStored := storage.File{Kind: storage.KindVideo, Key: su.folder() + "video.mp4", ContentType: storage.TypeMP4, Size: 10, SHA256: sha(nil)}
	wrongSize := stored
	wrongSize.Size++
	foreign := stored
	foreign.Key = su.Prefix + appID + "/other/photo.jpg"
	tests := []struct {
		name  string
		files []storage.File
	}{
		{"no files", nil},
		{"a file not stored", []storage.File{stored, notStored}},
		{"a size not stored", []storage.File{wrongSize}},
		{"another order's file", []storage.File{foreign}},
		{"a kind twice", []storage.File{stored, stored}},
	}
	for _, tt := range tests {
		if key, err := su.Sink.PutManifest(ctxT(t), manifestFor(tt.files...)); err == nil {
			t.Errorf("PutManifest(%s) = %q, nil, want an error", tt.name, key)
		}
	}
	if m, err := su.Sink.GetManifest(ctxT(t), appID, orderNo); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("GetManifest() after refused PutManifest = %+v, %v, want %v", m, err, storage.ErrNotFound)
	}
}

func (s suite) manifestOnce(t *testing.T) {
	su := s.setup(t, Options{})
	_, _, first := putSet(t, su)
	before, _ := su.get(t, su.folder()+storage.ManifestName)

	second := *first
	second.Decision = decisionJSON(appID, orderNo, "failed", "second")
	second.Files = first.Files[:1]
	if key, err := su.Sink.PutManifest(ctxT(t), &second); !errors.Is(err, storage.ErrManifestExists) {
		t.Errorf("second PutManifest() = %q, %v, want %v", key, err, storage.ErrManifestExists)
	}
	// Racing writers of one order's manifest: exactly one may win.
	const raceOrder = "ord-race"
	f, err := su.Sink.PutFile(ctxT(t), appID, raceOrder, storage.KindPhoto, bytes.NewReader(content(headJPEG, 100)))
	if err != nil {
		t.Fatalf("PutFile: %v", err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins := 0
	for i := 0; i < 6; i++ {
		wg.Go(func() {
			m := manifestFor(f)
			m.OrderNo = raceOrder
			m.Decision = decisionJSON(appID, raceOrder, "passed", fmt.Sprint("writer ", i))
			_, err := su.Sink.PutManifest(ctxT(t), m)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				wins++
			case !errors.Is(err, storage.ErrManifestExists):
				t.Errorf("racing PutManifest() = %v, want nil or %v", err, storage.ErrManifestExists)
			}
		})
	}
	wg.Wait()
	if wins != 1 {
		t.Errorf("%d of 6 racing PutManifest calls succeeded, want 1", wins)
	}
	after, _ := su.get(t, su.folder()+storage.ManifestName)
	if !bytes.Equal(after, before) {
		t.Errorf("manifest after a refused PutManifest:\n%s\nwant it unchanged:\n%s", after, before)
	}
}

func (s suite) verify(t *testing.T) {
	su := s.setup(t, Options{})
	photo, video, m := putSet(t, su)
	pkey, vkey, mkey := m.Files[0].Key, m.Files[1].Key, su.folder()+storage.ManifestName

	rep, err := su.Sink.Verify(ctxT(t), appID, orderNo)
	if err != nil || !rep.OK() || len(rep.Files) != 2 {
		t.Fatalf("Verify(intact set) = %+v, %v, want 2 files ok", rep, err)
	}
	for i, fr := range rep.Files {
		if fr.Status != storage.StatusOK || fr.File != m.Files[i] || fr.Size != m.Files[i].Size || fr.SHA256 != m.Files[i].SHA256 {
			t.Errorf("Verify(intact set).Files[%d] = %+v, want ok for %+v", i, fr, m.Files[i])
		}
	}

	changed := append([]byte(nil), photo...)
	changed[len(changed)/2] ^= 1
	longer := append(append([]byte(nil), video...), 0)
	tampered := *m
	tampered.Files = append([]storage.File(nil), m.Files...)
	tampered.Files[1].SHA256 = sha([]byte("something else"))
	tamperedJSON, _ := json.Marshal(&tampered)

	tests := []struct {
		name    string
		tamper  func()
		culprit string
		status  string
		wantErr error
	}{
		{"photo byte flipped", func() { su.put(t, pkey, changed) }, pkey, storage.StatusHashMismatch, storage.ErrMismatch},
		{"video grew", func() { su.put(t, vkey, longer) }, vkey, storage.StatusSizeMismatch, storage.ErrMismatch},
		{"video deleted", func() { su.del(t, vkey) }, vkey, storage.StatusMissing, storage.ErrMismatch},
		{"manifest hash changed", func() { su.put(t, mkey, tamperedJSON) }, vkey, storage.StatusHashMismatch, storage.ErrMismatch},
		{"manifest not JSON", func() { su.put(t, mkey, []byte(`{"app_id":`)) }, mkey, "", storage.ErrInvalidManifest},
		{"manifest of another order", func() { su.put(t, mkey, bytes.Replace(tamperedJSON, []byte(orderNo), []byte("ord-other"), 1)) }, mkey, "", storage.ErrInvalidManifest},
		{"manifest lists no files", func() {
			su.put(t, mkey, bytes.Replace(tamperedJSON, []byte(`"files":[`), []byte(`"files":[],"x":[`), 1))
		}, mkey, "", storage.ErrInvalidManifest},
		{"manifest lists a foreign key", func() { su.put(t, mkey, bytes.Replace(tamperedJSON, []byte("/video.mp4"), []byte("/../video.mp4"), 1)) }, mkey, "", storage.ErrInvalidManifest},
		{"manifest deleted", func() { su.del(t, mkey) }, mkey, "", storage.ErrNotFound},
	}
	for _, tt := range tests {
		// Restore the intact set, then break one thing.
		su.put(t, pkey, photo)
		su.put(t, vkey, video)
		raw, _ := json.Marshal(m)
		su.put(t, mkey, raw)
		tt.tamper()

		rep, err := su.Sink.Verify(ctxT(t), appID, orderNo)
		if !errors.Is(err, tt.wantErr) || !strings.Contains(fmt.Sprint(err), tt.culprit) {
			t.Errorf("Verify(%s) error = %v, want %v naming %s", tt.name, err, tt.wantErr, tt.culprit)
		}
		if tt.status == "" {
			continue
		}
		if rep == nil || rep.OK() {
			t.Errorf("Verify(%s) report = %+v, want a mismatch", tt.name, rep)
			continue
		}
		for _, fr := range rep.Files {
			want := storage.StatusOK
			if fr.File.Key == tt.culprit {
				want = tt.status
			}
			if fr.Status != want {
				t.Errorf("Verify(%s): %s is %s, want %s", tt.name, fr.File.Key, fr.Status, want)
			}
		}
	}
}

// recorder is an S3 HTTP client that remembers the headers of requests
// and can change them on their way.
type recorder struct {
	next interface {
		Do(*http.Request) (*http.Response, error)
	}
	mu      sync.Mutex
	headers []http.Header
	query   []string
	change  func(*http.Request)
}

func (r *recorder) Do(req *http.Request) (*http.Response, error) {
	r.mu.Lock()
	r.headers = append(r.headers, req.Header.Clone())
	r.query = append(r.query, req.Method+" "+req.URL.RawQuery)
	r.mu.Unlock()
	if r.change != nil {
		r.change(req)
	}
	return r.next.Do(req)
}

func (r *recorder) option() func(*s3.Options) {
	return func(o *s3.Options) {
		r.next = o.HTTPClient
		o.HTTPClient = r
	}
}

func (s suite) encryption(t *testing.T) {
	tests := []struct{ sse, keyID string }{
		{storage.SSEAES256, ""},
		{storage.SSEKMS, "arn:aws:kms:us-east-1:111122223333:key/facesync-test"},
	}
	for _, tt := range tests {
		rec := &recorder{}
		su := s.setup(t, Options{
			Config:        storage.Config{SSE: tt.sse, KMSKeyID: tt.keyID},
			ClientOptions: []func(*s3.Options){rec.option()},
		})
		putSet(t, su) // a small file, a multipart one and the manifest
		creates := 0
		for i, h := range rec.headers {
			q := rec.query[i]
			// PutObject, CreateMultipartUpload: the requests that set an
			// object's encryption.
			if !(strings.HasPrefix(q, "PUT ") && !strings.Contains(q, "partNumber=")) && !strings.HasPrefix(q, "POST uploads") {
				continue
			}
			creates++
			if got := h.Get("X-Amz-Server-Side-Encryption"); got != tt.sse {
				t.Errorf("SSE %s: request %q sent x-amz-server-side-encryption %q, want %q", tt.sse, q, got, tt.sse)
			}
			if got := h.Get("X-Amz-Server-Side-Encryption-Aws-Kms-Key-Id"); got != tt.keyID {
				t.Errorf("SSE %s: request %q sent kms key id %q, want %q", tt.sse, q, got, tt.keyID)
			}
		}
		if creates != 3 {
			t.Errorf("SSE %s: %d object-creating requests seen, want 3 (photo, video upload, manifest): %q", tt.sse, creates, rec.query)
		}
		if rep, err := su.Sink.Verify(ctxT(t), appID, orderNo); err != nil || !rep.OK() {
			t.Errorf("SSE %s: Verify() = %+v, %v, want ok", tt.sse, rep, err)
		}
	}
}

// flipReader flips one bit of the byte at offset at.
type flipReader struct {
	r   io.ReadCloser
	off int64
	at  int64
}

func (f *flipReader) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if f.at >= f.off && f.at < f.off+int64(n) {
		p[f.at-f.off] ^= 0x01
	}
	f.off += int64(n)
	return n, err
}

func (f *flipReader) Close() error { return f.r.Close() }

func (s suite) corruptOnWire(t *testing.T) {
	// After the SDK has computed the part's checksum and signed the
	// request, one bit of every part flips on its way to the server.
	flip := func(o *s3.Options) {
		rec := &recorder{change: func(req *http.Request) {
			if req.Method == http.MethodPut && req.URL.Query().Has("partNumber") && req.Body != nil {
				req.Body = &flipReader{r: req.Body, at: 4321}
			}
		}}
		rec.option()(o)
	}
	// Over plain HTTP the SDK also signs the payload's SHA-256, which
	// catches the flip first; with an unsigned payload (as over HTTPS)
	// only the part's CRC32 does.
	unsigned := func(o *s3.Options) {
		o.APIOptions = append(o.APIOptions, func(st *middleware.Stack) error {
			return st.Initialize.Add(middleware.InitializeMiddlewareFunc("facesync-test-unsigned",
				func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
					return next.HandleInitialize(v4.SetPayloadHash(ctx, "UNSIGNED-PAYLOAD"), in)
				}), middleware.After)
		})
	}
	tests := []struct {
		name     string
		opts     []func(*s3.Options)
		wantCode string
	}{
		{"signed payload", []func(*s3.Options){flip}, ""},
		{"unsigned payload", []func(*s3.Options){flip, unsigned}, "BadDigest"},
	}
	for _, tt := range tests {
		su := s.setup(t, Options{ClientOptions: tt.opts})
		f, err := su.Sink.PutFile(ctxT(t), appID, orderNo, storage.KindVideo, bytes.NewReader(content(headMP4, 7*mib)))
		if err == nil || (tt.wantCode != "" && apiCode(err) != tt.wantCode) {
			t.Errorf("PutFile(part corrupted on the wire, %s) = %+v, %v, want an error %s", tt.name, f, err, tt.wantCode)
		}
		su.assertEmpty(t)
	}
}

func apiCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

// corruptBuffers changes one byte of an upload's body before the SDK
// computes its checksums: a bug between the sink's reader and the SDK that
// only the sink's own full-object checksum can catch. With strip it also
// removes the full-object checksum the sink supplies, as a server that
// ignores checksums would, leaving the sink's comparison with the checksum
// the server returns as the only guard.
func corruptBuffers(strip bool) func(*s3.Options) {
	return func(o *s3.Options) {
		o.APIOptions = append(o.APIOptions, func(st *middleware.Stack) error {
			return st.Initialize.Add(middleware.InitializeMiddlewareFunc("facesync-test-corrupt",
				func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
					var body *io.Reader
					switch p := in.Parameters.(type) {
					case *s3.UploadPartInput:
						if aws.ToInt32(p.PartNumber) == 2 {
							body = &p.Body
						}
					case *s3.PutObjectInput:
						if !strings.HasSuffix(aws.ToString(p.Key), storage.ManifestName) {
							body = &p.Body
							if strip {
								p.ChecksumCRC32 = nil
							}
						}
					case *s3.CompleteMultipartUploadInput:
						if strip {
							p.ChecksumCRC32 = nil
						}
					}
					if body != nil {
						b, err := io.ReadAll(*body)
						if err != nil {
							return middleware.InitializeOutput{}, middleware.Metadata{}, err
						}
						b[len(b)/3] ^= 0x80
						*body = bytes.NewReader(b)
					}
					return next.HandleInitialize(ctx, in)
				}), middleware.After)
		})
	}
}

func (s suite) corruptInBuffer(t *testing.T) {
	tests := []struct {
		name  string
		strip bool
		want  func(error) bool
		about string
	}{
		{"server checks the supplied checksum", false, func(err error) bool { return apiCode(err) == "BadDigest" }, "a BadDigest error from the server"},
		{"server returns its own checksum", true, func(err error) bool { return errors.Is(err, storage.ErrChecksum) }, storage.ErrChecksum.Error()},
	}
	for _, tt := range tests {
		su := s.setup(t, Options{ClientOptions: []func(*s3.Options){corruptBuffers(tt.strip)}})
		for _, n := range []int{1000, 12 * mib} {
			f, err := su.Sink.PutFile(ctxT(t), appID, orderNo, storage.KindVideo, bytes.NewReader(content(headMP4, n)))
			if !tt.want(err) {
				t.Errorf("PutFile(%d bytes corrupted before the SDK's checksum, %s) = %+v, %v, want %s", n, tt.name, f, err, tt.about)
			}
		}
		su.assertEmpty(t)
	}
}

func (s suite) retention(t *testing.T) {
	for _, mode := range []string{storage.LockGovernance, storage.LockCompliance} {
		before := time.Now()
		su := s.setup(t, Options{ObjectLock: true, Config: storage.Config{LockMode: mode, LockDays: 1}})
		_, _, m := putSet(t, su)
		after := time.Now()
		if s.caps.ConditionalWrites {
			if key, err := su.Sink.PutManifest(ctxT(t), m); !errors.Is(err, storage.ErrManifestExists) {
				t.Errorf("%s: second PutManifest() on a versioned bucket = %q, %v, want %v", mode, key, err, storage.ErrManifestExists)
			}
		}
		keys := []string{m.Files[0].Key, m.Files[1].Key, su.folder() + storage.ManifestName}
		for _, key := range keys {
			ctx := ctxT(t)
			ret, err := su.Client.GetObjectRetention(ctx, &s3.GetObjectRetentionInput{Bucket: &su.Bucket, Key: &key})
			if err != nil {
				t.Fatalf("%s: GetObjectRetention(%s): %v", mode, key, err)
			}
			until := aws.ToTime(ret.Retention.RetainUntilDate)
			lo, hi := before.Add(24*time.Hour).Truncate(time.Second), after.Add(24*time.Hour+time.Second)
			if string(ret.Retention.Mode) != mode || until.Before(lo) || until.After(hi) {
				t.Errorf("%s: retention of %s = %s until %v, want %s until between %v and %v", mode, key, ret.Retention.Mode, until, mode, lo, hi)
			}
			head, err := su.Client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &su.Bucket, Key: &key})
			if err != nil {
				t.Fatalf("%s: HeadObject(%s): %v", mode, key, err)
			}
			del := &s3.DeleteObjectInput{Bucket: &su.Bucket, Key: &key, VersionId: head.VersionId}
			if _, err := su.Client.DeleteObject(ctx, del); err == nil {
				t.Errorf("%s: DeleteObject(%s, version %s) = nil, want refused while retained", mode, key, aws.ToString(head.VersionId))
			}
			_, err = su.Client.PutObjectRetention(ctx, &s3.PutObjectRetentionInput{
				Bucket: &su.Bucket, Key: &key, VersionId: head.VersionId,
				Retention: &types.ObjectLockRetention{Mode: types.ObjectLockRetentionMode(mode), RetainUntilDate: aws.Time(before.Add(time.Hour))},
			})
			if err == nil {
				t.Errorf("%s: shortening the retention of %s = nil, want refused", mode, key)
			}
		}
		if rep, err := su.Sink.Verify(ctxT(t), appID, orderNo); err != nil || !rep.OK() {
			t.Errorf("%s: Verify() after refused deletes = %+v, %v, want ok", mode, rep, err)
		}
	}
}

// retentionMismatch: an object whose checksum does not match must not stay
// visible even when a retention protects it.
func (s suite) retentionMismatch(t *testing.T) {
	for _, mode := range []string{storage.LockGovernance, storage.LockCompliance} {
		su := s.setup(t, Options{
			ObjectLock:    true,
			Config:        storage.Config{LockMode: mode, LockDays: 1},
			ClientOptions: []func(*s3.Options){corruptBuffers(true)},
		})
		for _, n := range []int{1000, 12 * mib} {
			f, err := su.Sink.PutFile(ctxT(t), appID, orderNo, storage.KindVideo, bytes.NewReader(content(headMP4, n)))
			if !errors.Is(err, storage.ErrChecksum) {
				t.Errorf("%s: PutFile(%d bytes corrupted, checksum not checked by the server) = %+v, %v, want %v", mode, n, f, err, storage.ErrChecksum)
			}
		}
		su.assertEmpty(t)
		if mode != storage.LockGovernance {
			continue
		}
		// GOVERNANCE can be bypassed: the bad versions themselves are gone.
		vs, err := su.Client.ListObjectVersions(ctxT(t), &s3.ListObjectVersionsInput{Bucket: &su.Bucket})
		if err != nil {
			t.Fatalf("ListObjectVersions: %v", err)
		}
		for _, v := range vs.Versions {
			t.Errorf("%s: version %s of %s left, want none", mode, aws.ToString(v.VersionId), aws.ToString(v.Key))
		}
	}
}
