package storage

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"
)

// MemoryConfig configures a Memory sink. The zero value is ready to use.
type MemoryConfig struct {
	// Prefix starts every key, as Config.Prefix: it must end with "/".
	// Empty means DefaultPrefix.
	Prefix string
	// MaxBytes bounds the bytes held over all objects; a PutFile or
	// PutManifest that would pass it fails and stores nothing. Zero means
	// no bound.
	MaxBytes int64
	// NowFunc gives manifests' fetched_at. Nil means time.Now.
	NowFunc func() time.Time
}

// ErrFull means a Memory sink refused an object because it would hold
// more than MemoryConfig.MaxBytes.
var ErrFull = errors.New("memory sink full")

// Memory is an evidence sink that keeps objects in memory, for tests and
// small demos: it holds every file whole. It names objects, checks ids and
// manifests and reports mismatches as S3 does, and passes the same
// conformance suite (storagetest.Run). It is safe for concurrent use.
//
// Besides the Sink methods it gives raw access by key (Object, SetObject,
// DeleteObject, Keys), so tests can inspect and tamper with what is stored.
type Memory struct {
	prefix string
	max    int64
	now    func() time.Time

	mu      sync.Mutex
	objects map[string]memObject
	size    int64 // bytes held over all objects
}

type memObject struct {
	data        []byte
	contentType string
}

var _ Sink = (*Memory)(nil)

// NewMemory returns an empty in-memory sink. It checks cfg as NewS3 does
// the same fields.
func NewMemory(cfg MemoryConfig) (*Memory, error) {
	if cfg.Prefix == "" {
		cfg.Prefix = DefaultPrefix
	}
	if !strings.HasSuffix(cfg.Prefix, "/") || strings.HasPrefix(cfg.Prefix, "/") {
		return nil, fmt.Errorf("storage: prefix %q must end with / and not start with /", truncate(cfg.Prefix))
	}
	if cfg.MaxBytes < 0 {
		return nil, fmt.Errorf("storage: negative max bytes %d", cfg.MaxBytes)
	}
	if cfg.NowFunc == nil {
		cfg.NowFunc = time.Now
	}
	return &Memory{prefix: cfg.Prefix, max: cfg.MaxBytes, now: cfg.NowFunc, objects: map[string]memObject{}}, nil
}

// folder is the order's key prefix; the ids must have been checked.
func (m *Memory) folder(appID, orderNo string) string {
	return m.prefix + appID + "/" + orderNo + "/"
}

// ManifestKey returns the key of the order's manifest.
func (m *Memory) ManifestKey(appID, orderNo string) (string, error) {
	if err := checkIDs(appID, orderNo); err != nil {
		return "", err
	}
	return m.folder(appID, orderNo) + ManifestName, nil
}

// Ping answers nil unless ctx is done: memory is always reachable.
func (m *Memory) Ping(ctx context.Context) error {
	return ctx.Err()
}

// PutFile implements Sink. It reads r to its end, hashing as it goes, and
// stores the file only once the whole of it was read without error and ctx
// is still live. An empty r is refused, as by S3.
func (m *Memory) PutFile(ctx context.Context, appID, orderNo, kind string, r io.Reader) (File, error) {
	name, contentType, body, err := openFile(ctx, appID, orderNo, kind, r)
	if err != nil {
		return File{}, err
	}
	key := m.folder(appID, orderNo) + name
	var buf bytes.Buffer
	src := io.Reader(body)
	limit := m.room(key)
	if limit >= 0 {
		src = io.LimitReader(body, limit+1)
	}
	if _, err := buf.ReadFrom(src); err != nil {
		return File{}, fmt.Errorf("storage: read %s: %w", kind, err)
	}
	if limit >= 0 && int64(buf.Len()) > limit {
		return File{}, fmt.Errorf("storage: %s: more than %d bytes: %w", key, m.max, ErrFull)
	}
	if err := ctx.Err(); err != nil {
		return File{}, fmt.Errorf("storage: read %s: %w", kind, err)
	}
	if err := m.store(key, buf.Bytes(), contentType); err != nil {
		return File{}, err
	}
	return File{
		Kind:        kind,
		Key:         key,
		ContentType: contentType,
		Size:        body.n,
		SHA256:      hex.EncodeToString(body.sha.Sum(nil)),
	}, nil
}

// room is how many bytes an object at key may have now, or -1 without a
// bound. The object it would replace counts as free.
func (m *Memory) room(key string) int64 {
	if m.max == 0 {
		return -1
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.max - m.size + int64(len(m.objects[key].data))
}

// store puts data at key, replacing any object there, within MaxBytes.
func (m *Memory) store(key string, data []byte, contentType string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	old := m.objects[key]
	size := m.size - int64(len(old.data)) + int64(len(data))
	if m.max > 0 && size > m.max {
		return fmt.Errorf("storage: %s: %d bytes would pass %d held: %w", key, len(data), m.max, ErrFull)
	}
	m.objects[key] = memObject{data: data, contentType: contentType}
	m.size = size
	return nil
}

// PutManifest implements Sink, with the checks of S3.PutManifest: every
// file listed must belong to the order and be stored at the stated size.
// The check and the write happen under one lock, so of racing writers
// exactly one succeeds.
func (m *Memory) PutManifest(ctx context.Context, man *Manifest) (string, error) {
	key, err := checkManifest(m.prefix, man)
	if err != nil {
		return "", err
	}
	if err := ctx.Err(); err != nil {
		return "", fmt.Errorf("storage: put manifest %s: %w", key, err)
	}
	mm := *man
	if mm.FetchedAt == "" {
		mm.FetchedAt = m.now().UTC().Format(time.RFC3339)
	}
	data, err := json.MarshalIndent(&mm, "", "  ")
	if err != nil {
		return "", fmt.Errorf("storage: encode manifest %s: %w", key, err)
	}
	data = append(data, '\n')

	m.mu.Lock()
	defer m.mu.Unlock()
	for _, f := range man.Files {
		o, ok := m.objects[f.Key]
		if !ok {
			return "", fmt.Errorf("storage: manifest %s lists %s, which is not stored", key, f.Key)
		}
		if got := int64(len(o.data)); got != f.Size {
			return "", fmt.Errorf("storage: manifest %s lists %s with %d bytes, %d stored", key, f.Key, f.Size, got)
		}
	}
	if _, ok := m.objects[key]; ok {
		return "", fmt.Errorf("storage: %s: %w", key, ErrManifestExists)
	}
	if m.max > 0 && m.size+int64(len(data)) > m.max {
		return "", fmt.Errorf("storage: manifest %s: %d bytes would pass %d held: %w", key, len(data), m.max, ErrFull)
	}
	m.objects[key] = memObject{data: data, contentType: "application/json"}
	m.size += int64(len(data))
	return key, nil
}

// GetManifest implements Sink, refusing what S3.GetManifest refuses as
// ErrInvalidManifest.
func (m *Memory) GetManifest(ctx context.Context, appID, orderNo string) (*Manifest, error) {
	key, err := m.ManifestKey(appID, orderNo)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("storage: get %s: %w", key, err)
	}
	data, _, ok := m.Object(key)
	if !ok {
		return nil, fmt.Errorf("storage: %s: %w", key, ErrNotFound)
	}
	return decodeManifest(data, key, m.prefix, appID, orderNo)
}

// Verify implements Sink.
func (m *Memory) Verify(ctx context.Context, appID, orderNo string) (*Report, error) {
	man, err := m.GetManifest(ctx, appID, orderNo)
	if err != nil {
		return nil, err
	}
	return verifyFiles(m.folder(appID, orderNo)+ManifestName, man.Files, func(f File) (io.ReadCloser, bool, error) {
		data, _, ok := m.Object(f.Key)
		return io.NopCloser(bytes.NewReader(data)), ok, nil
	})
}

// Object returns a copy of the object at key and its content type; ok is
// false when there is none.
func (m *Memory) Object(key string) (data []byte, contentType string, ok bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	o, ok := m.objects[key]
	return bytes.Clone(o.data), o.contentType, ok
}

// SetObject stores a copy of data at key, replacing any object there,
// without the checks of PutFile and PutManifest and without MaxBytes: it
// is for tests that tamper with stored evidence.
func (m *Memory) SetObject(key string, data []byte, contentType string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.size += int64(len(data)) - int64(len(m.objects[key].data))
	m.objects[key] = memObject{data: bytes.Clone(data), contentType: contentType}
}

// DeleteObject removes the object at key, if any.
func (m *Memory) DeleteObject(key string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.size -= int64(len(m.objects[key].data))
	delete(m.objects, key)
}

// Keys lists the keys of every object held, in order.
func (m *Memory) Keys() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	keys := make([]string, 0, len(m.objects))
	for k := range m.objects {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
