package storage

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/feature/s3/transfermanager"
	tmtypes "github.com/aws/aws-sdk-go-v2/feature/s3/transfermanager/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// Limits and defaults of Config.
const (
	MinPartSize        = 5 << 20 // the S3 minimum for every part but the last
	MaxPartSize        = 5 << 30 // the S3 maximum
	DefaultConcurrency = 2
	MaxConcurrency     = 64
	DefaultFailTimeout = 30 * time.Second
)

// Server-side encryption and object-lock values accepted by Config.
const (
	SSEAES256       = "AES256"
	SSEKMS          = "aws:kms"
	LockGovernance  = "GOVERNANCE"
	LockCompliance  = "COMPLIANCE"
	maxManifestSize = 1 << 20
)

// Config configures an S3 sink. Only Bucket is required.
type Config struct {
	// Bucket must exist; with LockMode set it must have object lock
	// enabled.
	Bucket string
	// Prefix starts every key; it must end with "/". Empty means
	// DefaultPrefix.
	Prefix string
	// PartSize is the size of each multipart part and of each buffer in
	// flight; files smaller than it go up in one PutObject. Zero means
	// MinPartSize.
	PartSize int64
	// Concurrency is how many parts of one file are uploaded at once. Zero
	// means DefaultConcurrency.
	Concurrency int
	// SSE asks the server to encrypt every object: "" (off), SSEAES256 or
	// SSEKMS; KMSKeyID names the key for SSEKMS (empty: the bucket's or
	// account's default key).
	SSE      string
	KMSKeyID string
	// LockMode and LockDays give every object an object-lock retention
	// (LockGovernance or LockCompliance) until LockDays after it is
	// written. Both or neither.
	LockMode string
	LockDays int
	// FailTimeout bounds the clean-up after a failed or cancelled upload
	// (AbortMultipartUpload, or removing an object whose checksum did not
	// match). It runs on a fresh context so that a cancelled caller still
	// leaves no upload behind. It also bounds how long the requests in
	// flight when the caller cancels may take to finish before the abort.
	// Zero means DefaultFailTimeout.
	FailTimeout time.Duration
	// NowFunc gives the time for retention dates and manifests' fetched_at.
	// Nil means time.Now.
	NowFunc func() time.Time
}

// ConfigError is what Validate returns: the Config field at fault and why,
// so that a caller can name its own setting for the field.
type ConfigError struct {
	Field string
	Msg   string
}

func (e *ConfigError) Error() string { return "storage: " + e.Msg }

// Validate checks c, zero values standing for the defaults. Bucket is
// required.
func (c Config) Validate() error {
	bad := func(field, format string, args ...any) error {
		return &ConfigError{Field: field, Msg: fmt.Sprintf(format, args...)}
	}
	switch {
	case c.Prefix != "" && (!strings.HasSuffix(c.Prefix, "/") || strings.HasPrefix(c.Prefix, "/")):
		return bad("Prefix", "prefix %q must end with / and not start with /", truncate(c.Prefix))
	case c.PartSize != 0 && (c.PartSize < MinPartSize || c.PartSize > MaxPartSize):
		return bad("PartSize", "part size %d out of range [%d, %d]", c.PartSize, MinPartSize, int64(MaxPartSize))
	case c.Concurrency != 0 && (c.Concurrency < 1 || c.Concurrency > MaxConcurrency):
		return bad("Concurrency", "concurrency %d out of range [1, %d]", c.Concurrency, MaxConcurrency)
	case c.SSE != "" && c.SSE != SSEAES256 && c.SSE != SSEKMS:
		return bad("SSE", "server-side encryption %q: want %s or %s", truncate(c.SSE), SSEAES256, SSEKMS)
	case c.KMSKeyID != "" && c.SSE != SSEKMS:
		return bad("KMSKeyID", "kms key id given without %s encryption", SSEKMS)
	case c.LockMode == "" && c.LockDays != 0:
		return bad("LockDays", "lock days given without a lock mode")
	case c.LockMode != "" && c.LockMode != LockGovernance && c.LockMode != LockCompliance:
		return bad("LockMode", "lock mode %q: want %s or %s", truncate(c.LockMode), LockGovernance, LockCompliance)
	case c.LockMode != "" && (c.LockDays < 1 || c.LockDays > 36500):
		return bad("LockDays", "lock days %d out of range [1, 36500]", c.LockDays)
	case c.FailTimeout < 0:
		return bad("FailTimeout", "negative fail timeout %v", c.FailTimeout)
	case c.Bucket == "": // last, so that a caller without a bucket yet can check the rest
		return bad("Bucket", "bucket not set")
	}
	return nil
}

// S3 is the evidence sink on an S3-compatible bucket.
//
// Uploads stream through the SDK's transfer manager with the multipart
// threshold set to the part size. Memory per upload is bounded by
// (Concurrency + 2) × PartSize: the transfer manager reads the first part
// into a buffer of its own (growing it while reading, so briefly up to one
// more part of garbage), then allocates a pool of Concurrency + 1 part
// buffers. With the defaults (5 MiB parts, 2 in flight) that is 20 MiB per
// upload, and per pod FACESYNC_EVIDENCE_CONCURRENCY × 20 MiB: 80 MiB for
// the default 4, plus the Go runtime, the HTTP client and the garbage
// collector's headroom (GOMEMLIMIT trims the latter). A file smaller than
// PartSize costs one buffer of its size. Measured with the defaults
// (BenchmarkPutFileRSS): peak RSS 28, 39 and 40 MiB for one 10, 100 and
// 200 MB upload; about 110 MiB for four 100 MB uploads at once.
//
// Every object is checked end to end with a full-object CRC32 computed
// while streaming (CRC32 rather than CRC64NVME because Go computes it an
// order of magnitude faster, and S3 accepts both as full-object
// checksums). The sum is supplied with the PutObject or the
// CompleteMultipartUpload, so a server that checks checksums refuses a
// corrupted object before it becomes visible; each part also carries the
// CRC32 the SDK computed over its buffer, so a part corrupted on the wire
// is refused on its own. When the server answers with a full-object
// checksum that still differs (a server that does not check), the object
// is deleted again and ErrChecksum returned: by version id when the server
// gave one, bypassing a GOVERNANCE retention; a COMPLIANCE retention cannot
// be bypassed by anyone, so then a delete marker hides the bad version.
//
// A failed or cancelled multipart upload is aborted within FailTimeout,
// so no part of it stays stored and nothing appears at the key. A
// cancellation stops the reading at once, but lets the part requests
// already sent finish (for up to FailTimeout) before the abort: a part
// still being stored when the abort arrives could otherwise outlive it.
type S3 struct {
	client *s3.Client
	tm     *transfermanager.Client
	cfg    Config
}

var _ Sink = (*S3)(nil)

// NewS3 returns a sink writing to cfg.Bucket through client. It checks cfg
// and fills in defaults; it does not contact the server (see Ping).
func NewS3(client *s3.Client, cfg Config) (*S3, error) {
	if client == nil {
		return nil, errors.New("storage: nil s3 client")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Prefix == "" {
		cfg.Prefix = DefaultPrefix
	}
	if cfg.PartSize == 0 {
		cfg.PartSize = MinPartSize
	}
	if cfg.Concurrency == 0 {
		cfg.Concurrency = DefaultConcurrency
	}
	if cfg.FailTimeout == 0 {
		cfg.FailTimeout = DefaultFailTimeout
	}
	if cfg.NowFunc == nil {
		cfg.NowFunc = time.Now
	}
	tm := transfermanager.New(client, func(o *transfermanager.Options) {
		o.PartSizeBytes = cfg.PartSize
		o.MultipartUploadThreshold = cfg.PartSize
		o.Concurrency = cfg.Concurrency
		o.ChecksumAlgorithm = tmtypes.ChecksumAlgorithmCrc32
		o.FailTimeout = cfg.FailTimeout
	})
	return &S3{client: client, tm: tm, cfg: cfg}, nil
}

// folder is the order's key prefix; the ids must have been checked.
func (s *S3) folder(appID, orderNo string) string {
	return s.cfg.Prefix + appID + "/" + orderNo + "/"
}

// ManifestKey returns the key of the order's manifest.
func (s *S3) ManifestKey(appID, orderNo string) (string, error) {
	if err := checkIDs(appID, orderNo); err != nil {
		return "", err
	}
	return s.folder(appID, orderNo) + ManifestName, nil
}

// Ping checks that the bucket exists and the credentials may use it.
func (s *S3) Ping(ctx context.Context) error {
	if _, err := s.client.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: &s.cfg.Bucket}); err != nil {
		return fmt.Errorf("storage: bucket %s: %w", s.cfg.Bucket, err)
	}
	return nil
}

// PutFile implements Sink. See S3 for how the upload is checked and
// bounded. An empty r is refused: empty evidence is no evidence.
func (s *S3) PutFile(ctx context.Context, appID, orderNo, kind string, r io.Reader) (File, error) {
	name, contentType, body, err := openFile(ctx, appID, orderNo, kind, r)
	if err != nil {
		return File{}, err
	}
	key := s.folder(appID, orderNo) + name
	in := &transfermanager.UploadObjectInput{
		Bucket:            &s.cfg.Bucket,
		Key:               &key,
		Body:              body,
		ContentType:       &contentType,
		ChecksumAlgorithm: tmtypes.ChecksumAlgorithmCrc32,
		ChecksumType:      tmtypes.ChecksumTypeFullObject,
	}
	if s.cfg.SSE != "" {
		in.ServerSideEncryption = tmtypes.ServerSideEncryption(s.cfg.SSE)
		if s.cfg.KMSKeyID != "" {
			in.SSEKMSKeyID = &s.cfg.KMSKeyID
		}
	}
	if s.cfg.LockMode != "" {
		in.ObjectLockMode = tmtypes.ObjectLockMode(s.cfg.LockMode)
		in.ObjectLockRetainUntilDate = aws.Time(s.retainUntil())
	}
	// The caller's cancellation stops the stream (body.stop), not the
	// requests in flight: a part the server is still storing when the
	// upload is aborted can land after the abort and bring the upload back
	// (S3 documents this of AbortMultipartUpload; versitygw does it too).
	// So the requests run on a context that outlives ctx by FailTimeout,
	// and the abort is sent once every part request has its answer.
	upCtx, cancel := outlive(ctx, s.cfg.FailTimeout)
	defer cancel()
	out, err := s.tm.UploadObject(upCtx, in, func(o *transfermanager.Options) {
		o.S3 = &sealingClient{S3APIClient: o.S3, body: body}
	})
	if err != nil {
		if body.err != nil {
			return File{}, fmt.Errorf("storage: read %s: %w", kind, body.err)
		}
		return File{}, fmt.Errorf("storage: upload %s: %w", key, err)
	}
	if got, want := aws.ToString(out.ChecksumCRC32), body.crc32(); fullObjectSum(got, out.ChecksumType) && got != want {
		if err := s.remove(key, aws.ToString(out.VersionID)); err != nil {
			return File{}, fmt.Errorf("storage: upload %s: server crc32 %s, streamed %s, and removing it failed (%v): %w", key, got, want, err, ErrChecksum)
		}
		return File{}, fmt.Errorf("storage: upload %s: server crc32 %s, streamed %s: %w", key, got, want, ErrChecksum)
	}
	return File{
		Kind:        kind,
		Key:         key,
		ContentType: contentType,
		Size:        body.n,
		SHA256:      hex.EncodeToString(body.sha.Sum(nil)),
	}, nil
}

// fullObjectSum reports whether a checksum the server returned is a
// full-object CRC32 that can be compared with the streamed one; servers
// that ignore checksums return none, and a composite one ("...-N") is a
// checksum of part checksums.
func fullObjectSum(sum string, typ tmtypes.ChecksumType) bool {
	return sum != "" && !strings.Contains(sum, "-") && (typ == "" || typ == tmtypes.ChecksumTypeFullObject)
}

// outlive returns a context with ctx's values that is cancelled d after
// ctx is done, or by the returned function.
func outlive(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	octx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	stop := context.AfterFunc(ctx, func() {
		t := time.AfterFunc(d, cancel)
		context.AfterFunc(octx, func() { t.Stop() })
	})
	return octx, func() { stop(); cancel() }
}

func (s *S3) retainUntil() time.Time {
	return s.cfg.NowFunc().UTC().Add(time.Duration(s.cfg.LockDays) * 24 * time.Hour)
}

// remove deletes an object that failed its checksum, on a fresh context
// bounded by FailTimeout so that it happens even for a cancelled caller.
// With a version id it deletes that version (bypassing a GOVERNANCE
// retention); if that is refused (COMPLIANCE) it falls back to a delete
// marker, which hides the version from every reader of the key.
func (s *S3) remove(key, versionID string) error {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.FailTimeout)
	defer cancel()
	in := &s3.DeleteObjectInput{Bucket: &s.cfg.Bucket, Key: &key}
	if versionID != "" {
		in.VersionId = &versionID
		if s.cfg.LockMode == LockGovernance {
			in.BypassGovernanceRetention = aws.Bool(true)
		}
		if _, err := s.client.DeleteObject(ctx, in); err == nil {
			return nil
		}
		in = &s3.DeleteObjectInput{Bucket: &s.cfg.Bucket, Key: &key}
	}
	_, err := s.client.DeleteObject(ctx, in)
	return err
}

// sumReader counts and hashes what the transfer manager reads, and stops
// at the caller's cancellation. It is read by one goroutine only: the
// transfer manager fills its part buffers from the upload's own goroutine.
type sumReader struct {
	r    io.Reader
	stop func() error // the caller's ctx.Err
	sha  hash.Hash
	crc  hash.Hash32
	n    int64
	eof  bool
	err  error // the source's error, not io.EOF
}

func (b *sumReader) Read(p []byte) (int, error) {
	if err := b.stop(); err != nil {
		b.err = err
		return 0, err
	}
	n, err := b.r.Read(p)
	if n > 0 {
		b.sha.Write(p[:n])
		b.crc.Write(p[:n])
		b.n += int64(n)
	}
	switch {
	case err == io.EOF:
		b.eof = true
	case err != nil:
		b.err = err
	}
	return n, err
}

// crc32 returns the CRC32 of what was read, base64 as S3 wants it.
func (b *sumReader) crc32() string {
	var sum [4]byte
	binary.BigEndian.PutUint32(sum[:], b.crc.Sum32())
	return base64.StdEncoding.EncodeToString(sum[:])
}

// sealingClient supplies the streamed full-object CRC32 on the request that
// makes the object visible (PutObject for a small file,
// CompleteMultipartUpload otherwise), so the server checks it before it
// stores the object. The transfer manager sends either request only after
// it read the body to its end; the check of eof makes that an invariant.
type sealingClient struct {
	transfermanager.S3APIClient
	body *sumReader
}

var errUnsealed = errors.New("body not read to its end before the upload completed")

func (c *sealingClient) PutObject(ctx context.Context, in *s3.PutObjectInput, opts ...func(*s3.Options)) (*s3.PutObjectOutput, error) {
	if !c.body.eof {
		return nil, errUnsealed
	}
	cp := *in
	cp.ChecksumCRC32 = aws.String(c.body.crc32())
	return c.S3APIClient.PutObject(ctx, &cp, opts...)
}

func (c *sealingClient) CompleteMultipartUpload(ctx context.Context, in *s3.CompleteMultipartUploadInput, opts ...func(*s3.Options)) (*s3.CompleteMultipartUploadOutput, error) {
	if !c.body.eof {
		return nil, errUnsealed
	}
	cp := *in
	cp.ChecksumCRC32 = aws.String(c.body.crc32())
	cp.ChecksumType = types.ChecksumTypeFullObject
	cp.MpuObjectSize = aws.Int64(c.body.n)
	return c.S3APIClient.CompleteMultipartUpload(ctx, &cp, opts...)
}

// putOnceInput is the PutObject of a small JSON document (a manifest, a
// receipt) that is written once: If-None-Match: *, its CRC32 for the
// server to check, and the sink's server-side encryption.
func (s *S3) putOnceInput(key string, data []byte) *s3.PutObjectInput {
	var crc [4]byte
	binary.BigEndian.PutUint32(crc[:], crc32.ChecksumIEEE(data))
	in := &s3.PutObjectInput{
		Bucket:        &s.cfg.Bucket,
		Key:           &key,
		Body:          bytes.NewReader(data),
		ContentLength: aws.Int64(int64(len(data))),
		ContentType:   aws.String("application/json"),
		ChecksumCRC32: aws.String(base64.StdEncoding.EncodeToString(crc[:])),
		IfNoneMatch:   aws.String("*"),
	}
	if s.cfg.SSE != "" {
		in.ServerSideEncryption = types.ServerSideEncryption(s.cfg.SSE)
		if s.cfg.KMSKeyID != "" {
			in.SSEKMSKeyId = &s.cfg.KMSKeyID
		}
	}
	return in
}

// PutManifest implements Sink. It checks that every file listed is stored
// at the stated size (HeadObject) and belongs to the order, sets FetchedAt
// when empty, and writes the manifest with If-None-Match: *, so of two
// writers racing only one succeeds and the other gets ErrManifestExists.
func (s *S3) PutManifest(ctx context.Context, m *Manifest) (string, error) {
	key, err := checkManifest(s.cfg.Prefix, m)
	if err != nil {
		return "", err
	}
	for _, f := range m.Files {
		head, err := s.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &s.cfg.Bucket, Key: aws.String(f.Key)})
		if err != nil {
			if isNotFound(err) {
				return "", fmt.Errorf("storage: manifest %s lists %s, which is not stored", key, f.Key)
			}
			return "", fmt.Errorf("storage: manifest %s: head %s: %w", key, f.Key, err)
		}
		if got := aws.ToInt64(head.ContentLength); got != f.Size {
			return "", fmt.Errorf("storage: manifest %s lists %s with %d bytes, %d stored", key, f.Key, f.Size, got)
		}
	}
	mm := *m
	if mm.FetchedAt == "" {
		mm.FetchedAt = s.cfg.NowFunc().UTC().Format(time.RFC3339)
	}
	data, err := json.MarshalIndent(&mm, "", "  ")
	if err != nil {
		return "", fmt.Errorf("storage: encode manifest %s: %w", key, err)
	}
	data = append(data, '\n')
	in := s.putOnceInput(key, data)
	if s.cfg.LockMode != "" {
		in.ObjectLockMode = types.ObjectLockMode(s.cfg.LockMode)
		in.ObjectLockRetainUntilDate = aws.Time(s.retainUntil())
	}
	if _, err := s.client.PutObject(ctx, in); err != nil {
		if httpStatus(err) == http.StatusPreconditionFailed {
			return "", fmt.Errorf("storage: %s: %w", key, ErrManifestExists)
		}
		return "", fmt.Errorf("storage: put manifest %s: %w", key, err)
	}
	return key, nil
}

// checkFiles refuses a manifest whose files do not belong to its order:
// an unknown kind, a key outside the order's folder or not named for its
// kind, two entries of one kind, or a malformed hash.
func (s *S3) checkFiles(m *Manifest) error {
	folder := s.folder(m.AppID, m.OrderNo)
	seen := map[string]bool{}
	for _, f := range m.Files {
		if f.Kind != KindPhoto && f.Kind != KindVideo {
			return fmt.Errorf("file kind %q: want %s or %s", truncate(f.Kind), KindPhoto, KindVideo)
		}
		if seen[f.Kind] {
			return fmt.Errorf("%s listed twice", f.Kind)
		}
		seen[f.Kind] = true
		name, ok := strings.CutPrefix(f.Key, folder)
		if !ok || !validName(f.Kind, name) {
			return fmt.Errorf("%s key %q is not a %s object of order %s/%s", f.Kind, truncate(f.Key), f.Kind, m.AppID, m.OrderNo)
		}
		if f.Size < 1 {
			return fmt.Errorf("%s size %d", f.Kind, f.Size)
		}
		if b, err := hex.DecodeString(f.SHA256); err != nil || len(b) != sha256.Size {
			return fmt.Errorf("%s sha256 %q is not 64 hex digits", f.Kind, truncate(f.SHA256))
		}
	}
	return nil
}

func validName(kind, name string) bool {
	switch kind {
	case KindPhoto:
		return name == "photo.jpg" || name == "photo.png" || name == "photo.bin"
	case KindVideo:
		return name == "video.mp4" || name == "video.bin"
	}
	return false
}

// GetManifest implements Sink. A manifest that is not JSON, names another
// order, lists no files or lists objects outside its folder is
// ErrInvalidManifest.
func (s *S3) GetManifest(ctx context.Context, appID, orderNo string) (*Manifest, error) {
	key, err := s.ManifestKey(appID, orderNo)
	if err != nil {
		return nil, err
	}
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{Bucket: &s.cfg.Bucket, Key: &key})
	if err != nil {
		if isNotFound(err) {
			return nil, fmt.Errorf("storage: %s: %w", key, ErrNotFound)
		}
		return nil, fmt.Errorf("storage: get %s: %w", key, err)
	}
	defer out.Body.Close()
	data, err := io.ReadAll(io.LimitReader(out.Body, maxManifestSize+1))
	if err != nil {
		return nil, fmt.Errorf("storage: read %s: %w", key, err)
	}
	return decodeManifest(data, key, s.cfg.Prefix, appID, orderNo)
}

// Verify implements Sink. It reads the manifest (ErrNotFound when there is
// none, ErrInvalidManifest when it is unreadable) and streams every object
// it lists through SHA-256. The report lists each file's outcome; when any
// file is missing or differs, Verify returns the report together with an
// error that names those files and wraps ErrMismatch.
func (s *S3) Verify(ctx context.Context, appID, orderNo string) (*Report, error) {
	m, err := s.GetManifest(ctx, appID, orderNo)
	if err != nil {
		return nil, err
	}
	return verifyFiles(s.folder(appID, orderNo)+ManifestName, m.Files, func(f File) (io.ReadCloser, bool, error) {
		out, err := s.client.GetObject(ctx, &s3.GetObjectInput{Bucket: &s.cfg.Bucket, Key: aws.String(f.Key)})
		switch {
		case isNotFound(err):
			return nil, false, nil
		case err != nil:
			return nil, false, fmt.Errorf("storage: get %s: %w", f.Key, err)
		}
		return out.Body, true, nil
	})
}

func httpStatus(err error) int {
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		return re.HTTPStatusCode()
	}
	return 0
}

func isNotFound(err error) bool {
	var nsk *types.NoSuchKey
	var nf *types.NotFound
	return errors.As(err, &nsk) || errors.As(err, &nf) || httpStatus(err) == http.StatusNotFound
}
