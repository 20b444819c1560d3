package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/facesync/facesync/storage"
	"github.com/facesync/facesync/worker/idasc"
)

// Decision statuses (CONTRACT.md section 4).
const (
	StatusPassed = "passed"
	StatusFailed = "failed"
	StatusError  = "error"
)

// Evidence statuses (CONTRACT.md section 4).
const (
	EvidencePending     = "pending"
	EvidenceStored      = "stored"
	EvidenceUnavailable = "unavailable"
	EvidenceSkipped     = "skipped"
	EvidenceFailed      = "failed"
)

// The worker's own codes for status error.
const (
	CodeUnknownApp       = "unknown_app"
	CodeNoResult         = "no_result"
	CodeProviderRejected = "provider_rejected"
	CodeProviderHTTP4xx  = "provider_http_4xx"
	CodeRetriesExhausted = "retries_exhausted"
)

// Record is the decision record: a JSON string under DecisionKey and the
// result of the faceid:fetch_result task. id_no and name are masked before
// a Record is built; nothing unmasked is ever stored. Its fields are the
// ones a manifest repeats, then evidence.
type Record struct {
	storage.Decision
	Evidence Evidence `json:"evidence"`
}

// Evidence is the record's evidence part. Msg says why evidence is
// unavailable or failed.
type Evidence struct {
	Status      string         `json:"status"`
	ManifestKey string         `json:"manifest_key,omitempty"`
	Files       []storage.File `json:"files"`
	Msg         string         `json:"msg,omitempty"`
}

// DecisionKey is the Redis key of an order's decision record.
func DecisionKey(appID, orderNo string) string {
	return "facesync:decision:" + appID + ":" + orderNo
}

// The worker's bookkeeping keys, all per order and all expiring.
func sinceKey(appID, orderNo string) string    { return "facesync:since:" + appID + ":" + orderNo }
func rejectedKey(appID, orderNo string) string { return "facesync:rejected:" + appID + ":" + orderNo }
func evidenceRejectedKey(appID, orderNo string) string {
	return "facesync:rejected_evidence:" + appID + ":" + orderNo
}
func getFileKey(appID, orderNo string) string { return "facesync:get_file:" + appID + ":" + orderNo }
func filesKey(appID, orderNo string) string   { return "facesync:files:" + appID + ":" + orderNo }

// MaskIDNo masks an id number: 12 characters or more keep the first 3 and
// last 4, shorter ones only the last 2.
func MaskIDNo(s string) string {
	r := []rune(s)
	keepHead, keepTail := 0, 2
	if len(r) >= 12 {
		keepHead, keepTail = 3, 4
	}
	for i := range r {
		if i >= keepHead && i < len(r)-keepTail {
			r[i] = '*'
		}
	}
	return string(r)
}

// MaskName keeps a name's first character.
func MaskName(s string) string {
	r := []rune(s)
	for i := 1; i < len(r); i++ {
		r[i] = '*'
	}
	return string(r)
}

// recordFromResult builds a passed or failed record from a provider answer,
// masking PII on the way in.
func recordFromResult(appID, orderNo string, res *idasc.Result, status string) *Record {
	return &Record{Decision: storage.Decision{
		AppID: appID, OrderNo: orderNo, Status: status,
		Code: res.Code, Msg: res.Msg,
		BizSeqNo: res.BizSeqNo, TransactionTime: res.TransactionTime, OccurredTime: res.OccurredTime,
		LiveRate: res.LiveRate, Similarity: res.Similarity,
		IDType: res.IDType, IDNo: MaskIDNo(res.IDNo), Name: MaskName(res.Name),
	}}
}

func errorRecord(appID, orderNo, code, msg string) *Record {
	return &Record{Decision: storage.Decision{AppID: appID, OrderNo: orderNo, Status: StatusError, Code: code, Msg: msg}}
}

// manifest returns the manifest for the record's evidence files.
func (r *Record) manifest(files []storage.File, fetchedAt time.Time) *storage.Manifest {
	return &storage.Manifest{Decision: r.Decision, FetchedAt: fetchedAt.UTC().Format(time.RFC3339), Files: files}
}

// store keeps decision records and the worker's per-order bookkeeping.
type store struct {
	rdb redis.UniversalClient
	ttl time.Duration
}

// get returns the order's record, or nil when there is none.
func (s *store) get(ctx context.Context, appID, orderNo string) (*Record, error) {
	b, err := s.rdb.Get(ctx, DecisionKey(appID, orderNo)).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read decision record: %w", err)
	}
	var r Record
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("decode decision record %s: %w", DecisionKey(appID, orderNo), err)
	}
	return &r, nil
}

// createScript writes the record and the order's get_file unless a record
// exists, and returns {created, the stored record, its get_file}.
var createScript = redis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if cur then return {0, cur, redis.call('GET', KEYS[2]) or ''} end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
if ARGV[3] ~= '' then redis.call('SET', KEYS[2], ARGV[3], 'PX', ARGV[2]) end
return {1, ARGV[1], ARGV[3]}`)

// created is what create found or wrote.
type created struct {
	rec     *Record
	raw     []byte // rec as stored
	created bool
	getFile string // get_file of the order that wrote the record ("" when unknown)
}

// create writes rec unless the order already has a record: the first final
// decision wins. getFile is remembered while evidence is pending, so a
// duplicate re-enqueueing the evidence task asks for what the first order
// did.
func (s *store) create(ctx context.Context, rec *Record, getFile string) (*created, error) {
	b, err := json.Marshal(rec)
	if err != nil {
		return nil, fmt.Errorf("encode decision record: %w", err)
	}
	if rec.Evidence.Status != EvidencePending {
		getFile = ""
	}
	key := DecisionKey(rec.AppID, rec.OrderNo)
	v, err := createScript.Run(ctx, s.rdb, []string{key, getFileKey(rec.AppID, rec.OrderNo)}, b, s.ttl.Milliseconds(), getFile).Slice()
	if err != nil {
		return nil, fmt.Errorf("write decision record: %w", err)
	}
	if len(v) != 3 {
		return nil, fmt.Errorf("write decision record: unexpected answer %d items", len(v))
	}
	n, _ := v[0].(int64)
	raw, _ := v[1].(string)
	gf, _ := v[2].(string)
	c := &created{rec: rec, raw: []byte(raw), created: n == 1, getFile: gf}
	if !c.created {
		var cur Record
		if err := json.Unmarshal(c.raw, &cur); err != nil {
			return nil, fmt.Errorf("decode decision record %s: %w", key, err)
		}
		c.rec = &cur
	}
	return c, nil
}

// errNoRecord reports an update of a record that does not exist.
var errNoRecord = errors.New("no decision record")

// updateEvidence applies fn to the stored record inside an optimistic
// transaction (WATCH), so two handlers touching one record never lose an
// update. fn returns false to leave the record as it is.
func (s *store) updateEvidence(ctx context.Context, appID, orderNo string, fn func(*Evidence) bool) (*Record, error) {
	key := DecisionKey(appID, orderNo)
	var out *Record
	txf := func(tx *redis.Tx) error {
		b, err := tx.Get(ctx, key).Bytes()
		if errors.Is(err, redis.Nil) {
			return errNoRecord
		}
		if err != nil {
			return err
		}
		var r Record
		if err := json.Unmarshal(b, &r); err != nil {
			return fmt.Errorf("decode decision record %s: %w", key, err)
		}
		out = &r
		if !fn(&r.Evidence) {
			return nil
		}
		if r.Evidence.Files == nil {
			r.Evidence.Files = []storage.File{}
		}
		nb, err := json.Marshal(&r)
		if err != nil {
			return err
		}
		_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.SetArgs(ctx, key, nb, redis.SetArgs{KeepTTL: true})
			return nil
		})
		return err
	}
	for i := 0; i < 20; i++ {
		err := s.rdb.Watch(ctx, txf, key)
		if errors.Is(err, redis.TxFailedErr) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("update evidence of %s: %w", key, err)
		}
		return out, nil
	}
	return nil, fmt.Errorf("update evidence of %s: too much contention", key)
}

// sinceScript starts the result-wait clock unless it runs and returns its
// start; a script rather than SET NX GET, which needs Redis 7.
var sinceScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if v then return v end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return ARGV[1]`)

// since returns when the order was first seen without a result, starting
// the clock now if it was not running.
func (s *store) since(ctx context.Context, appID, orderNo string, now time.Time, ttl time.Duration) (time.Time, error) {
	got, err := sinceScript.Run(ctx, s.rdb, []string{sinceKey(appID, orderNo)}, now.UnixMilli(), ttl.Milliseconds()).Text()
	if err != nil {
		return time.Time{}, fmt.Errorf("read result wait clock: %w", err)
	}
	ms, err := strconv.ParseInt(got, 10, 64)
	if err != nil {
		return now, nil
	}
	return time.UnixMilli(ms), nil
}

// addRejected notes under key (rejectedKey or evidenceRejectedKey) that the
// provider refused a request signed with generation gen, and returns how
// many distinct generations it refused.
func (s *store) addRejected(ctx context.Context, key string, gen int64) (int64, error) {
	p := s.rdb.TxPipeline()
	p.SAdd(ctx, key, gen)
	p.Expire(ctx, key, time.Hour)
	n := p.SCard(ctx, key)
	if _, err := p.Exec(ctx); err != nil {
		return 0, fmt.Errorf("count rejected tickets: %w", err)
	}
	return n.Val(), nil
}

// storedFiles returns the evidence files already stored for the order by
// earlier attempts, by kind.
func (s *store) storedFiles(ctx context.Context, appID, orderNo string) (map[string]storage.File, error) {
	m, err := s.rdb.HGetAll(ctx, filesKey(appID, orderNo)).Result()
	if err != nil {
		return nil, fmt.Errorf("read stored evidence files: %w", err)
	}
	out := make(map[string]storage.File, len(m))
	for kind, v := range m {
		var f storage.File
		if json.Unmarshal([]byte(v), &f) == nil {
			out[kind] = f
		}
	}
	return out, nil
}

// addStoredFile remembers a stored file so a later attempt need not fetch
// it again, and so a partial set is never forgotten.
func (s *store) addStoredFile(ctx context.Context, appID, orderNo string, f storage.File) error {
	b, err := json.Marshal(f)
	if err != nil {
		return err
	}
	key := filesKey(appID, orderNo)
	p := s.rdb.TxPipeline()
	p.HSet(ctx, key, f.Kind, b)
	p.Expire(ctx, key, s.ttl)
	if _, err := p.Exec(ctx); err != nil {
		return fmt.Errorf("remember stored evidence file: %w", err)
	}
	return nil
}
