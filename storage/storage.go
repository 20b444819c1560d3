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
	"errors"
	"fmt"
	"io"
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

// Decision is the decision record's fields that a manifest repeats (PII
// already masked by the caller). Field order and names are the contract's.
type Decision struct {
	AppID           string `json:"app_id"`
	OrderNo         string `json:"order_no"`
	Status          string `json:"status"`
	Code            string `json:"code"`
	Msg             string `json:"msg"`
	BizSeqNo        string `json:"biz_seq_no"`
	TransactionTime string `json:"transaction_time"`
	OccurredTime    string `json:"occurred_time"`
	LiveRate        string `json:"live_rate"`
	Similarity      string `json:"similarity"`
	IDType          string `json:"id_type"`
	IDNo            string `json:"id_no"`
	Name            string `json:"name"`
	DecidedAt       string `json:"decided_at"`
}

// Manifest is the auditors' record of an evidence set: the decision, when
// the evidence was fetched, and the files stored.
type Manifest struct {
	Decision
	// FetchedAt is RFC 3339 UTC; PutManifest sets it when empty.
	FetchedAt string `json:"fetched_at"`
	Files     []File `json:"files"`
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
