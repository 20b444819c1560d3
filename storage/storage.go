// Package storage keeps facesync's evidence: the decoded photo and video of
// a face session and the manifest that lists them, in an S3-compatible
// bucket.
//
// Objects are named as the contract fixes them:
//
//	{prefix}{app_id}/{order_no}/photo.jpg   (photo.png, photo.bin)
//	{prefix}{app_id}/{order_no}/video.mp4   (video.bin)
//	{prefix}{app_id}/{order_no}/manifest.json
//
// Files are streamed: memory does not grow with their size. The manifest is
// written last and only once; a set whose manifest exists is done.
//
// The package knows nothing of asynq, the provider or the worker; the
// worker depends on the Sink interface.
package storage

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"slices"
	"strings"
)

// Evidence kinds, as named in object keys and manifests.
const (
	KindPhoto = "photo"
	KindVideo = "video"
)

// Content types chosen from a file's first bytes.
const (
	TypeJPEG   = "image/jpeg"
	TypePNG    = "image/png"
	TypeMP4    = "video/mp4"
	TypeBinary = "application/octet-stream"
)

// ManifestName is the last path element of every manifest key.
const ManifestName = "manifest.json"

// DefaultPrefix is the key prefix used when Config.Prefix is empty.
const DefaultPrefix = "evidence/"

var (
	// ErrNotFound means an order has no manifest: its evidence is not
	// stored (yet).
	ErrNotFound = errors.New("manifest not found")
	// ErrManifestExists means PutManifest found a manifest already stored
	// for the order; the stored one was kept.
	ErrManifestExists = errors.New("manifest already exists")
	// ErrInvalidManifest means a stored manifest could not be read as one:
	// not JSON, or naming another order or objects outside its own folder.
	ErrInvalidManifest = errors.New("invalid manifest")
	// ErrMismatch means Verify found a stored object that differs from its
	// manifest entry, or is missing.
	ErrMismatch = errors.New("evidence does not match its manifest")
	// ErrChecksum means the server's checksum of an upload differed from
	// the one computed while streaming; the object was removed.
	ErrChecksum = errors.New("checksum mismatch")
)

// Sink stores evidence. The worker depends on this interface; S3 is its
// implementation, and storagetest.Run is the conformance suite every
// implementation passes.
//
// appID and orderNo must be 1 to 32 characters of A-Z a-z 0-9 _ -; any
// other value is refused with an error before a key is built from it.
type Sink interface {
	// PutFile streams r to the object for kind (KindPhoto or KindVideo),
	// naming it by the content's first bytes, and returns what the
	// manifest records about it. Either the whole file is stored and
	// checked end to end, or an error is returned and nothing is left at
	// the key. A file of a given kind may be stored again (a retry); the
	// last one wins.
	PutFile(ctx context.Context, appID, orderNo, kind string, r io.Reader) (File, error)
	// PutManifest writes the order's manifest, once: if one exists it
	// returns ErrManifestExists and leaves the stored one untouched. Every
	// file it lists must already be stored. It returns the manifest's key.
	PutManifest(ctx context.Context, m *Manifest) (string, error)
	// GetManifest reads the order's manifest; ErrNotFound if there is none.
	GetManifest(ctx context.Context, appID, orderNo string) (*Manifest, error)
	// Verify re-reads the manifest and every object it lists, comparing
	// sizes and SHA-256. It returns ErrNotFound when there is no manifest
	// and ErrInvalidManifest when it cannot be read as one. When a file is
	// missing or differs it returns the report together with an error that
	// names the files and wraps ErrMismatch; any other error (the store
	// unreachable) comes without a report.
	Verify(ctx context.Context, appID, orderNo string) (*Report, error)
	// ManifestKey is the key the order's manifest has or would have.
	ManifestKey(appID, orderNo string) (string, error)
	// Ping checks that the store answers (for /readyz).
	Ping(ctx context.Context) error
}

// File is one stored evidence file, as listed in manifests and decision
// records.
type File struct {
	Kind        string `json:"kind"`
	Key         string `json:"key"`
	ContentType string `json:"content_type"`
	Size        int64  `json:"size"`
	SHA256      string `json:"sha256"` // hex of the decoded bytes
}

// Manifest is the auditors' record of an evidence set: the fields of the
// decision it belongs to, when the evidence was fetched, and the files
// stored. Storage does not know the decision's schema: Decision is an
// opaque JSON object whose fields come first in the stored manifest, and
// whose app_id and order_no must name the manifest's order.
type Manifest struct {
	AppID   string
	OrderNo string
	// Decision is a JSON object; its fields are written first, in its
	// order. Nil writes app_id and order_no alone. Read back, it holds
	// every field of the manifest but fetched_at and files.
	Decision json.RawMessage
	// FetchedAt is RFC 3339 UTC; PutManifest sets it when empty.
	FetchedAt string
	Files     []File
}

// manifestTail is what follows the decision's fields in a stored manifest.
type manifestTail struct {
	FetchedAt string `json:"fetched_at"`
	Files     []File `json:"files"`
}

// MarshalJSON writes the decision's fields, then fetched_at and files.
func (m Manifest) MarshalJSON() ([]byte, error) {
	head := []byte(m.Decision)
	if len(bytes.TrimSpace(head)) == 0 {
		var err error
		if head, err = json.Marshal(struct {
			AppID   string `json:"app_id"`
			OrderNo string `json:"order_no"`
		}{m.AppID, m.OrderNo}); err != nil {
			return nil, err
		}
	}
	var ids struct {
		AppID   string `json:"app_id"`
		OrderNo string `json:"order_no"`
	}
	if err := json.Unmarshal(head, &ids); err != nil {
		return nil, fmt.Errorf("manifest decision is not a JSON object: %w", err)
	}
	if ids.AppID != m.AppID || ids.OrderNo != m.OrderNo {
		return nil, fmt.Errorf("manifest decision names order %q/%q, not %q/%q", truncate(ids.AppID), truncate(ids.OrderNo), m.AppID, m.OrderNo)
	}
	files := m.Files
	if files == nil {
		files = []File{}
	}
	tail, err := json.Marshal(manifestTail{FetchedAt: m.FetchedAt, Files: files})
	if err != nil {
		return nil, err
	}
	head = bytes.TrimSpace(head)
	head = bytes.TrimSpace(head[:len(head)-1]) // drop the closing brace
	out := make([]byte, 0, len(head)+len(tail)+1)
	out = append(out, head...)
	if len(head) > 1 { // not an empty object
		out = append(out, ',')
	}
	return append(out, tail[1:]...), nil
}

// UnmarshalJSON reads a stored manifest, keeping every field but
// fetched_at and files, in order, as Decision.
func (m *Manifest) UnmarshalJSON(b []byte) error {
	var tail manifestTail
	if err := json.Unmarshal(b, &tail); err != nil {
		return err
	}
	var ids struct {
		AppID   string `json:"app_id"`
		OrderNo string `json:"order_no"`
	}
	if err := json.Unmarshal(b, &ids); err != nil {
		return err
	}
	dec, err := withoutFields(b, "fetched_at", "files")
	if err != nil {
		return err
	}
	*m = Manifest{AppID: ids.AppID, OrderNo: ids.OrderNo, Decision: dec, FetchedAt: tail.FetchedAt, Files: tail.Files}
	return nil
}

// withoutFields returns the JSON object b without the named top-level
// fields, the others in their order.
func withoutFields(b []byte, drop ...string) (json.RawMessage, error) {
	d := json.NewDecoder(bytes.NewReader(b))
	if tok, err := d.Token(); err != nil || tok != json.Delim('{') {
		return nil, errors.New("manifest is not a JSON object")
	}
	out := []byte{'{'}
	for d.More() {
		tok, err := d.Token()
		if err != nil {
			return nil, err
		}
		name, _ := tok.(string)
		var v json.RawMessage
		if err := d.Decode(&v); err != nil {
			return nil, err
		}
		if slices.Contains(drop, name) {
			continue
		}
		k, _ := json.Marshal(name)
		if len(out) > 1 {
			out = append(out, ',')
		}
		out = append(append(append(out, k...), ':'), v...)
	}
	return append(out, '}'), nil
}

// Outcomes of verifying one file.
const (
	StatusOK           = "ok"
	StatusMissing      = "missing"
	StatusSizeMismatch = "size_mismatch"
	StatusHashMismatch = "hash_mismatch"
)

// Report is what Verify found.
type Report struct {
	ManifestKey string
	Files       []FileReport
}

// OK reports whether every listed file was found as the manifest states.
func (r *Report) OK() bool {
	for _, f := range r.Files {
		if f.Status != StatusOK {
			return false
		}
	}
	return true
}

// FileReport is the outcome for one file of a manifest.
type FileReport struct {
	File   File   // as the manifest states it
	Status string // StatusOK, StatusMissing, StatusSizeMismatch or StatusHashMismatch
	Size   int64  // bytes found (0 when missing)
	SHA256 string // hex of the bytes found ("" when missing)
}

// verifyFiles is Verify once the manifest is read: it streams each file
// that open finds (ok false: none is stored) through SHA-256 and compares
// it with what the manifest states. When any file is missing or differs,
// the report comes with an error that names those files and wraps
// ErrMismatch.
func verifyFiles(manifestKey string, files []File, open func(File) (r io.ReadCloser, ok bool, err error)) (*Report, error) {
	rep := &Report{ManifestKey: manifestKey}
	var bad []string
	for _, f := range files {
		fr := FileReport{File: f, Status: StatusMissing}
		r, ok, err := open(f)
		if err != nil {
			return nil, err
		}
		if ok {
			h := sha256.New()
			n, err := io.Copy(h, r)
			r.Close()
			if err != nil {
				return nil, fmt.Errorf("storage: read %s: %w", f.Key, err)
			}
			fr.Size, fr.SHA256 = n, hex.EncodeToString(h.Sum(nil))
			switch {
			case fr.Size != f.Size:
				fr.Status = StatusSizeMismatch
			case fr.SHA256 != f.SHA256:
				fr.Status = StatusHashMismatch
			default:
				fr.Status = StatusOK
			}
		}
		rep.Files = append(rep.Files, fr)
		if fr.Status != StatusOK {
			bad = append(bad, f.Key+": "+fr.Status)
		}
	}
	if len(bad) > 0 {
		return rep, fmt.Errorf("storage: %s: %s: %w", rep.ManifestKey, strings.Join(bad, ", "), ErrMismatch)
	}
	return rep, nil
}

// ValidID reports whether s may be used as an app_id or order_no: 1 to 32
// characters of A-Z a-z 0-9 _ -.
func ValidID(s string) bool {
	if len(s) < 1 || len(s) > 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}

func checkIDs(appID, orderNo string) error {
	if !ValidID(appID) {
		return fmt.Errorf("storage: invalid app_id %q: want 1 to 32 of A-Z a-z 0-9 _ -", truncate(appID))
	}
	if !ValidID(orderNo) {
		return fmt.Errorf("storage: invalid order_no %q: want 1 to 32 of A-Z a-z 0-9 _ -", truncate(orderNo))
	}
	return nil
}

// truncate keeps error messages short when a caller passes a huge value.
func truncate(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

// sniffLen is how many leading bytes Sniff looks at.
const sniffLen = 12

var (
	sigJPEG = []byte{0xFF, 0xD8, 0xFF}
	sigPNG  = []byte{0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'}
	sigFtyp = []byte("ftyp")
)

// Sniff returns the object name (without folder) and content type for a
// file of kind whose content starts with head: photo.jpg, photo.png,
// video.mp4, or kind.bin as application/octet-stream for anything else
// (including a JPEG sent as the video). It looks at no more than the first
// 12 bytes.
func Sniff(kind string, head []byte) (name, contentType string) {
	switch {
	case kind == KindPhoto && bytes.HasPrefix(head, sigJPEG):
		return "photo.jpg", TypeJPEG
	case kind == KindPhoto && bytes.HasPrefix(head, sigPNG):
		return "photo.png", TypePNG
	case kind == KindVideo && len(head) >= 8 && bytes.Equal(head[4:8], sigFtyp):
		return "video.mp4", TypeMP4
	}
	return kind + ".bin", TypeBinary
}

// openFile checks a PutFile call and sniffs the file's first bytes: it
// returns the object's name and content type and a reader of the whole
// file that computes SHA-256 and CRC32 as it is read and stops when ctx
// ends. Both sinks stream through it.
func openFile(ctx context.Context, appID, orderNo, kind string, r io.Reader) (name, contentType string, body *sumReader, err error) {
	if err := checkIDs(appID, orderNo); err != nil {
		return "", "", nil, err
	}
	if kind != KindPhoto && kind != KindVideo {
		return "", "", nil, fmt.Errorf("storage: kind %q: want %s or %s", truncate(kind), KindPhoto, KindVideo)
	}
	if err := ctx.Err(); err != nil {
		return "", "", nil, fmt.Errorf("storage: read %s: %w", kind, err)
	}
	head := make([]byte, sniffLen)
	n, err := io.ReadFull(r, head)
	switch {
	case err == io.EOF:
		return "", "", nil, fmt.Errorf("storage: %s is empty", kind)
	case err != nil && err != io.ErrUnexpectedEOF:
		return "", "", nil, fmt.Errorf("storage: read %s: %w", kind, err)
	}
	head = head[:n]
	name, contentType = Sniff(kind, head)
	return name, contentType, &sumReader{
		r:    io.MultiReader(bytes.NewReader(head), r),
		stop: ctx.Err,
		sha:  sha256.New(),
		crc:  crc32.NewIEEE(),
	}, nil
}
