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
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/facesync/facesync/storage"
)

// Bucket is raw access by key to the store a sink writes to, bypassing
// the sink, so the suite can inspect and tamper with what it stored. It
// knows nothing of evidence: it is the store as any other client sees it.
type Bucket interface {
	// Get returns the object at key and its content type, or an error
	// when there is none.
	Get(ctx context.Context, key string) (data []byte, contentType string, err error)
	// Put stores data at key, replacing any object there.
	Put(ctx context.Context, key string, data []byte) error
	// Delete removes the object at key.
	Delete(ctx context.Context, key string) error
	// Keys lists the key of every object stored.
	Keys(ctx context.Context) ([]string, error)
	// Uploads describes every upload begun but neither finished nor
	// abandoned (an S3 multipart upload); a store without such uploads
	// has none.
	Uploads(ctx context.Context) ([]string, error)
}

// Options is what a case asks of the sink it gets.
type Options struct {
	// Prefix for the sink's keys; empty means the sink's default,
	// storage.DefaultPrefix.
	Prefix string
}

// Setup is a sink under test and raw access to what it stores.
type Setup struct {
	Sink storage.Sink
	// Bucket reaches the sink's store directly. It holds only what the
	// sink stores: the suite checks that nothing is left in it after
	// refused and failed writes.
	Bucket Bucket
}

// NewFunc returns a sink on a store of its own, built with o.
type NewFunc func(t *testing.T, o Options) Setup

// Run is the conformance suite for storage.Sink implementations: every
// clause of the Sink contract, checked through the interface and Bucket.
// Cases run in parallel, each on a sink (and store) of its own.
// Guarantees of one backend alone (S3's encryption headers, checksums on
// the wire, object-lock retention) are tested by that backend's own
// tests.
func Run(t *testing.T, newSink NewFunc) {
	s := suite{newSink: newSink}
	cases := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"RoundTrip", s.roundTrip},
		{"ContentTypes", s.contentTypes},
		{"Prefix", s.prefix},
		{"RefusesEmpty", s.refusesEmpty},
		{"RefusesBadIDs", s.refusesBadIDs},
		{"ReaderFails", s.readerFails},
		{"Cancelled", s.cancelled},
		{"Ping", s.ping},
		{"Manifest", s.manifest},
		{"ManifestNeedsFiles", s.manifestNeedsFiles},
		{"ManifestOnce", s.manifestOnce},
		{"Verify", s.verify},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			c.run(t)
		})
	}
}

type suite struct {
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
// period (about 1 MB) does not divide S3's part size, so a swapped or
// repeated part would show.
func content(head []byte, n int) []byte {
	b := make([]byte, n)
	copy(b, head)
	for i := len(head); i < n; i++ {
		b[i] = byte(i*7 + i/4093)
	}
	return b
}

// JPEG returns n bytes that the sinks take for a JPEG photo: a JPEG's
// leading bytes, then content's pattern.
func JPEG(n int) []byte { return content(headJPEG, n) }

// MP4 returns n bytes that the sinks take for an MP4 video.
func MP4(n int) []byte { return content(headMP4, n) }

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// env is a case's sink and store, and the prefix it asked for.
type env struct {
	Setup
	prefix string
}

func (s suite) setup(t *testing.T, o Options) env {
	t.Helper()
	su := s.newSink(t, o)
	if su.Sink == nil || su.Bucket == nil {
		t.Fatalf("storagetest: NewFunc gave %+v, want a sink and its bucket", su)
	}
	prefix := o.Prefix
	if prefix == "" {
		prefix = storage.DefaultPrefix
	}
	return env{Setup: su, prefix: prefix}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func (su env) folder() string { return su.prefix + appID + "/" + orderNo + "/" }

// get reads an object back whole.
func (su env) get(t *testing.T, key string) ([]byte, string) {
	t.Helper()
	b, ct, err := su.Bucket.Get(ctxT(t), key)
	if err != nil {
		t.Fatalf("Bucket.Get(%q): %v", key, err)
	}
	return b, ct
}

func (su env) put(t *testing.T, key string, b []byte) {
	t.Helper()
	if err := su.Bucket.Put(ctxT(t), key, b); err != nil {
		t.Fatalf("Bucket.Put(%q): %v", key, err)
	}
}

func (su env) del(t *testing.T, key string) {
	t.Helper()
	if err := su.Bucket.Delete(ctxT(t), key); err != nil {
		t.Fatalf("Bucket.Delete(%q): %v", key, err)
	}
}

// AssertEmpty fails the test when b holds any object or any unfinished
// upload.
func AssertEmpty(t testing.TB, b Bucket) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	keys, err := b.Keys(ctx)
	if err != nil {
		t.Fatalf("Bucket.Keys: %v", err)
	}
	for _, k := range keys {
		t.Errorf("object %q left in the bucket, want none", k)
	}
	ups, err := b.Uploads(ctx)
	if err != nil {
		t.Fatalf("Bucket.Uploads: %v", err)
	}
	for _, u := range ups {
		t.Errorf("%s left, want none", u)
	}
}

func (su env) assertEmpty(t *testing.T) {
	t.Helper()
	AssertEmpty(t, su.Bucket)
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

// prefix: every key the sink makes starts with the prefix it was built
// with, and the store holds nothing else.
func (s suite) prefix(t *testing.T) {
	const prefix = "tenant-7/ev/"
	su := s.setup(t, Options{Prefix: prefix})
	_, _, m := putSet(t, su)
	folder := prefix + appID + "/" + orderNo + "/"
	want := []string{folder + "photo.jpg", folder + "video.mp4", folder + storage.ManifestName}
	if got := []string{m.Files[0].Key, m.Files[1].Key}; !slices.Equal(got, want[:2]) {
		t.Errorf("PutFile keys with prefix %q = %q, want %q", prefix, got, want[:2])
	}
	if k, err := su.Sink.ManifestKey(appID, orderNo); k != want[2] || err != nil {
		t.Errorf("ManifestKey(%q, %q) with prefix %q = %q, %v, want %q", appID, orderNo, prefix, k, err, want[2])
	}
	keys, err := su.Bucket.Keys(ctxT(t))
	if err != nil {
		t.Fatalf("Bucket.Keys: %v", err)
	}
	slices.Sort(keys)
	want = slices.Sorted(slices.Values(want))
	if !slices.Equal(keys, want) {
		t.Errorf("objects stored with prefix %q = %q, want %q", prefix, keys, want)
	}
	if rep, err := su.Sink.Verify(ctxT(t), appID, orderNo); err != nil || !rep.OK() {
		t.Errorf("Verify() with prefix %q = %+v, %v, want ok", prefix, rep, err)
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
func putSet(t *testing.T, su env) (photo, video []byte, m *storage.Manifest) {
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

// manifestKeyOrder is the manifest's fixed field order: the decision
// record's fields, then fetched_at and files.
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
	foreign.Key = su.prefix + appID + "/other/photo.jpg"
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
