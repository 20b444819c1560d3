// Package orderstore owns every piece of per-order state facesync keeps in
// Redis: the decision record partners read, and the worker's bookkeeping
// while an order is in flight. Every other package reads and changes an
// order through Store; none builds a per-order key itself.
//
// # Keys
//
// Two keys per order, both expiring with the record (FACESYNC_DECISION_TTL
// after the decision), or that long after their first write while no record
// exists yet, and a third once the order is purged:
//
//	key                                    type    holds
//	facesync:decision:{app_id}:{order_no}  string  the decision record, JSON (the contract's public key)
//	facesync:order:{app_id}:{order_no}     hash    the worker's bookkeeping, fields below
//	facesync:purged:{sha256}               string  the purge marker: Unix ms of the purge, for PurgeTTL (96 h)
//
// The purge marker is named by the hex SHA-256 of "{app_id}:{order_no}",
// so it outlives the order's data without holding its number (no personal
// information); it is the only key a purge leaves behind.
//
// Fields of the bookkeeping hash:
//
//	field         value
//	since         Unix ms of the first "no result yet" answer (the result-wait clock)
//	net_since     Unix ms of the first 66660021 answer (its own result-wait clock)
//	rej:decision  comma-separated ticket generations the provider refused for the decision call
//	rej:evidence  the same for the evidence call
//	get_file      get_file of the order that wrote the record, while evidence is pending
//	file:photo    JSON of the stored photo (storage.File), once uploaded
//	file:video    JSON of the stored video
//	rev:decision  how many times the fleet revived the order's archived fetch_result task
//	rev:evidence  the same for its fetch_evidence task
//	revive:PHASE  the payload of a revival under way, until its task is queued again
//	event:decision  the record JSON as it stood at the decision event while it is due; "delivered" once delivered
//	event:evidence  the same for the evidence event
//
// Two fleet-wide sorted sets join them: facesync:reconcile:journal, the
// revivals under way (member "{phase}:{app_id}:{order_no}"), and
// facesync:events_due (EventsDueKey), below.
//
// Events are marked due only for apps whose webhooks are on
// (Config.EventsFunc), in the same script as the transition that causes
// them; events.go holds their scripts, and the fleet-wide due set
// facesync:events_due (EventsDueKey) that lets a sweep find events whose
// delivery task a crash kept from being queued.
//
// # Scripts
//
// Every transition is one Lua script, so no two workers can interleave
// inside one (one mechanism: no WATCH loops, no MULTI). Each one first
// looks at the purge marker and writes nothing for a purged order: it
// answers the error reply purgedReply, which the Go side returns as
// ErrPurged. A task that slipped past the worker's own check (it started
// before the purge) so leaves no trace. A new write script must take the
// marker as a KEYS entry too.
//
//	script            transition                                  KEYS                             ARGV
//	decideScript      Decide: first final decision wins           record, state, marker, due set[, task hash]   record JSON, TTL ms, get_file, now ms, member
//	sinceScript       NoteNotReady, NoteProviderNetwork: a clock  record, state, marker            now ms, TTL ms, field
//	rejectScript      CountRejected                               record, state, marker            field, generation, TTL ms
//	fileScript        NoteFile                                    record, state, marker            field, file JSON, TTL ms
//	casScript         UpdateEvidence (compare-and-set)            record, marker                   expected JSON, new JSON
//	evidenceDueScript UpdateEvidence, pending to final: event due record, state, marker, due set   expected, new, now ms, member
//	noteRevivalScript NoteRevival: count, journal                 record, state, journal           phase, payload, member, now ms, TTL ms
//	doneRevivalScript RevivalDone: clear the journal              state, journal                   phase, member
//	deliveredScript   MarkDelivered                               state, due set                   field, member
//
// The revival and delivery scripts do not look at the marker: a purged
// order is never revived (the reconciler checks first), and its state is
// gone, so there is nothing to mark delivered.
//
// decideScript takes the due set as its last KEYS entry and marks the
// decision event due when ARGV[4] (now ms) is set.
//
// Reads (Get, State, Purged) are single commands. MarkPurged sets the
// marker; Delete removes the record and the bookkeeping.
package orderstore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/facesync/facesync/storage"
)

// DefaultTTL is how long a record and its bookkeeping live
// (FACESYNC_DECISION_TTL).
const DefaultTTL = 168 * time.Hour

// MinTTL is the shortest TTL Validate accepts: shorter would expire an
// order's bookkeeping while it is still being worked on.
const MinTTL = time.Minute

// RecordKey is the Redis key of an order's decision record.
func RecordKey(appID, orderNo string) string {
	return "facesync:decision:" + appID + ":" + orderNo
}

// stateKey is the Redis key of an order's bookkeeping hash.
func stateKey(appID, orderNo string) string {
	return "facesync:order:" + appID + ":" + orderNo
}

// PurgeTTL is how long a purged order's marker lives: longer than the
// provider keeps a face session, so no later task can fetch it again.
const PurgeTTL = 96 * time.Hour

// PurgedKey is the Redis key of an order's purge marker: the prefix and
// the hex SHA-256 of "{app_id}:{order_no}", so that it holds no personal
// information.
func PurgedKey(appID, orderNo string) string {
	sum := sha256.Sum256([]byte(appID + ":" + orderNo))
	return "facesync:purged:" + hex.EncodeToString(sum[:])
}

// Fields of the bookkeeping hash.
const (
	fieldSince    = "since"
	fieldNetSince = "net_since"
	fieldGetFile  = "get_file"
	fieldFile     = "file:" // + kind
	fieldReject   = "rej:"  // + phase
)

// Phases of an order whose refused tickets are counted apart.
const (
	PhaseDecision = "decision"
	PhaseEvidence = "evidence"
)

// Config configures a Store.
type Config struct {
	// TTL is the lifetime of a record and its bookkeeping; zero means
	// DefaultTTL.
	TTL time.Duration
	// EventsFunc tells which apps' transitions mark webhook events due
	// (those with a webhook); nil: none. Marking costs a copy of the
	// record in the bookkeeping, so apps without webhooks pay nothing.
	EventsFunc func(appID string) bool
}

// Validate checks c, with zero values standing for the defaults.
func (c Config) Validate() error {
	if c.TTL != 0 && c.TTL < MinTTL {
		return fmt.Errorf("orderstore: TTL %v is below the minimum %v", c.TTL, MinTTL)
	}
	return nil
}

// Store reads and changes orders in Redis.
type Store struct {
	rdb        redis.UniversalClient
	ttl        time.Duration
	eventsFunc func(appID string) bool
}

// New returns a Store on rdb.
func New(rdb redis.UniversalClient, cfg Config) (*Store, error) {
	if rdb == nil {
		return nil, errors.New("orderstore: nil redis client")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.TTL == 0 {
		cfg.TTL = DefaultTTL
	}
	return &Store{rdb: rdb, ttl: cfg.TTL, eventsFunc: cfg.EventsFunc}, nil
}

// keepTTL is the prologue of every script that writes the bookkeeping
// hash: it expires with the record when there is one, else TTL (ARGV[n])
// after its first write.
const keepTTL = purgedGuard + `
local function keep(ttl)
  local r = redis.call('PTTL', KEYS[1])
  if r > 0 then
    redis.call('PEXPIRE', KEYS[2], r)
  elseif redis.call('PTTL', KEYS[2]) == -1 then
    redis.call('PEXPIRE', KEYS[2], ttl)
  end
end
`

// purgedReply starts the error reply of a script that found the purge
// marker.
const purgedReply = "FACESYNC_PURGED"

// purgedGuard is the prologue of every write script: purged(k) answers
// the purgedReply error when the marker k exists.
const purgedGuard = `
local function purged(k)
  if redis.call('EXISTS', k) == 1 then return redis.error_reply('` + purgedReply + ` order was purged') end
  return nil
end
`

// decideScript writes the record unless one exists.
//
// KEYS[1] -> facesync:decision:{app}:{order}
// KEYS[2] -> facesync:order:{app}:{order}
// KEYS[3] -> facesync:purged:{sha256}
// ARGV[1] -> record JSON
// ARGV[2] -> TTL in ms
// ARGV[3] -> get_file to remember while evidence is pending (empty: none)
// KEYS[4] -> facesync:events_due
// KEYS[5] -> optional: the asynq task hash whose result is the stored record
// ARGV[4] -> now, Unix ms, to mark the decision event due; empty: no event
// ARGV[5] -> the event's member of the due set
//
// Output: {1, ”, ARGV[3]} when written (the caller has the record it
// sent); {0, stored record, the remembered get_file, maybe empty} when a
// record existed; the purgedReply error when the order was purged.
var decideScript = redis.NewScript(purgedGuard + `
local p = purged(KEYS[3]) if p then return p end
local function result(r)
  if #KEYS >= 5 and redis.call('EXISTS', KEYS[5]) == 1 then redis.call('HSET', KEYS[5], 'result', r) end
end
local cur = redis.call('GET', KEYS[1])
if cur then
  result(cur)
  return {0, cur, redis.call('HGET', KEYS[2], 'get_file') or ''}
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
result(ARGV[1])
if ARGV[3] ~= '' then redis.call('HSET', KEYS[2], 'get_file', ARGV[3]) end
if ARGV[4] ~= '' then
  redis.call('HSET', KEYS[2], 'event:decision', ARGV[1])
  redis.call('ZADD', KEYS[4], ARGV[4], ARGV[5])
end
if redis.call('EXISTS', KEYS[2]) == 1 then redis.call('PEXPIRE', KEYS[2], ARGV[2]) end
return {1, '', ARGV[3]}`)

// sinceScript starts a result-wait clock unless it runs.
//
// KEYS[1] -> facesync:decision:{app}:{order}
// KEYS[2] -> facesync:order:{app}:{order}
// KEYS[3] -> facesync:purged:{sha256}
// ARGV[1] -> now, Unix ms
// ARGV[2] -> TTL in ms
// ARGV[3] -> field of the clock (since or net_since)
//
// Output: the clock's start, Unix ms, as a string; the purgedReply error
// when the order was purged.
var sinceScript = redis.NewScript(keepTTL + `
local p = purged(KEYS[3]) if p then return p end
local v = redis.call('HGET', KEYS[2], ARGV[3])
if v then return v end
redis.call('HSET', KEYS[2], ARGV[3], ARGV[1])
keep(ARGV[2])
return ARGV[1]`)

// rejectScript adds a refused ticket generation to a phase's list.
//
// KEYS[1] -> facesync:decision:{app}:{order}
// KEYS[2] -> facesync:order:{app}:{order}
// KEYS[3] -> facesync:purged:{sha256}
// ARGV[1] -> field (rej:decision or rej:evidence)
// ARGV[2] -> generation
// ARGV[3] -> TTL in ms
//
// Output: how many distinct generations the phase has had refused; the
// purgedReply error when the order was purged.
var rejectScript = redis.NewScript(keepTTL + `
local p = purged(KEYS[3]) if p then return p end
local cur = redis.call('HGET', KEYS[2], ARGV[1]) or ''
local n, found = 0, false
for g in string.gmatch(cur, '[^,]+') do
  n = n + 1
  if g == ARGV[2] then found = true end
end
if found then return n end
if cur == '' then cur = ARGV[2] else cur = cur .. ',' .. ARGV[2] end
redis.call('HSET', KEYS[2], ARGV[1], cur)
keep(ARGV[3])
return n + 1`)

// fileScript remembers one stored evidence file.
//
// KEYS[1] -> facesync:decision:{app}:{order}
// KEYS[2] -> facesync:order:{app}:{order}
// KEYS[3] -> facesync:purged:{sha256}
// ARGV[1] -> field (file:photo or file:video)
// ARGV[2] -> file JSON
// ARGV[3] -> TTL in ms
//
// Output: 1; the purgedReply error when the order was purged.
var fileScript = redis.NewScript(keepTTL + `
local p = purged(KEYS[3]) if p then return p end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
keep(ARGV[3])
return 1`)

// casScript replaces the record if it is still what the caller read,
// keeping its TTL.
//
// KEYS[1] -> facesync:decision:{app}:{order}
// KEYS[2] -> facesync:purged:{sha256}
// ARGV[1] -> the record as read
// ARGV[2] -> the new record
//
// Output: {1} when replaced; {0, current record} when it changed since;
// {-1} when there is no record; the purgedReply error when the order was
// purged.
var casScript = redis.NewScript(purgedGuard + `
local p = purged(KEYS[2]) if p then return p end
local cur = redis.call('GET', KEYS[1])
if not cur then return {-1} end
if cur ~= ARGV[1] then return {0, cur} end
redis.call('SET', KEYS[1], ARGV[2], 'KEEPTTL')
return {1}`)

// ErrNoRecord reports a change to an order that has no decision record
// (expired, deleted or never written).
var ErrNoRecord = errors.New("no decision record")

// ErrPurged reports a write to an order that was purged: the store wrote
// nothing, and nothing may be fetched or stored for the order while its
// marker lives (PurgeTTL).
var ErrPurged = errors.New("order was purged")

// scriptErr returns err, as ErrPurged when a script found the marker.
func scriptErr(appID, orderNo string, err error) error {
	if err != nil && strings.HasPrefix(err.Error(), purgedReply) {
		return fmt.Errorf("%s:%s: %w", appID, orderNo, ErrPurged)
	}
	return err
}

// MarkPurged sets the order's purge marker for PurgeTTL (again, when it is
// set): from then on every write to the order fails with ErrPurged.
func (s *Store) MarkPurged(ctx context.Context, appID, orderNo string, now time.Time) error {
	if err := s.rdb.Set(ctx, PurgedKey(appID, orderNo), now.UnixMilli(), PurgeTTL).Err(); err != nil {
		return fmt.Errorf("set purge marker: %w", err)
	}
	return nil
}

// Purged reports whether the order's purge marker is set.
func (s *Store) Purged(ctx context.Context, appID, orderNo string) (bool, error) {
	n, err := s.rdb.Exists(ctx, PurgedKey(appID, orderNo)).Result()
	if err != nil {
		return false, fmt.Errorf("read purge marker: %w", err)
	}
	return n == 1, nil
}

// Get returns the order's record and its JSON as stored, or ErrNoRecord.
func (s *Store) Get(ctx context.Context, appID, orderNo string) (*Record, []byte, error) {
	key := RecordKey(appID, orderNo)
	b, err := s.rdb.Get(ctx, key).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, nil, fmt.Errorf("%s: %w", key, ErrNoRecord)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("read decision record: %w", err)
	}
	r, err := decode(key, b)
	return r, b, err
}

func decode(key string, b []byte) (*Record, error) {
	var r Record
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("decode decision record %s: %w", key, err)
	}
	return &r, nil
}

// Decided is what Decide found or wrote.
type Decided struct {
	Record  *Record
	Raw     []byte // Record as stored
	Created bool   // false: the order had a record already, which was kept
	// GetFile is the get_file of the order that wrote the record while its
	// evidence is pending ("" when unknown or not pending).
	GetFile string
}

// Decide writes rec unless the order already has a record: the first final
// decision wins. getFile is remembered while rec's evidence is pending, so
// a duplicate re-enqueueing the evidence task asks for what the first
// order did.
func (s *Store) Decide(ctx context.Context, rec *Record, getFile string) (*Decided, error) {
	return s.DecideWithResult(ctx, rec, getFile, "")
}

// DecideWithResult is Decide that also writes the stored record as the
// result of the asynq task whose hash is resultKey (asynq v0.26 keeps a
// task's result in the "result" field of its hash, as its ResultWriter
// does), in the same script: one round trip less per order. An empty
// resultKey writes no result; a hash that does not exist is left alone.
func (s *Store) DecideWithResult(ctx context.Context, rec *Record, getFile, resultKey string) (*Decided, error) {
	b, err := json.Marshal(rec)
	if err != nil {
		return nil, fmt.Errorf("encode decision record: %w", err)
	}
	if rec.Evidence.Status != EvidencePending {
		getFile = ""
	}
	key := RecordKey(rec.AppID, rec.OrderNo)
	dueMs := ""
	if s.marksEvents(rec.AppID) {
		dueMs = strconv.FormatInt(time.Now().UnixMilli(), 10)
	}
	keys := append(s.keys(rec.AppID, rec.OrderNo), EventsDueKey)
	if resultKey != "" {
		keys = append(keys, resultKey)
	}
	v, err := decideScript.Run(ctx, s.rdb, keys,
		b, s.ttl.Milliseconds(), getFile, dueMs, eventMember(rec.AppID, rec.OrderNo, EventDecision)).Slice()
	if err != nil {
		return nil, fmt.Errorf("write decision record: %w", scriptErr(rec.AppID, rec.OrderNo, err))
	}
	if len(v) != 3 {
		return nil, fmt.Errorf("write decision record: unexpected answer of %d items", len(v))
	}
	n, _ := v[0].(int64)
	raw, _ := v[1].(string)
	gf, _ := v[2].(string)
	d := &Decided{Record: rec, Raw: b, Created: n == 1, GetFile: gf}
	if !d.Created {
		d.Raw = []byte(raw)
		if d.Record, err = decode(key, d.Raw); err != nil {
			return nil, err
		}
	}
	return d, nil
}

// NoteNotReady starts the order's result-wait clock at now unless it runs,
// and returns when it started.
func (s *Store) NoteNotReady(ctx context.Context, appID, orderNo string, now time.Time) (time.Time, error) {
	return s.startClock(ctx, appID, orderNo, fieldSince, now)
}

// NoteProviderNetwork starts the order's clock of 66660021 answers
// (network trouble on the provider's side) at now unless it runs, and
// returns when it started. It is apart from NoteNotReady's: each answer
// is retried for the result wait since its own first arrival.
func (s *Store) NoteProviderNetwork(ctx context.Context, appID, orderNo string, now time.Time) (time.Time, error) {
	return s.startClock(ctx, appID, orderNo, fieldNetSince, now)
}

func (s *Store) startClock(ctx context.Context, appID, orderNo, field string, now time.Time) (time.Time, error) {
	got, err := sinceScript.Run(ctx, s.rdb, s.keys(appID, orderNo), now.UnixMilli(), s.ttl.Milliseconds(), field).Text()
	if err != nil {
		return time.Time{}, fmt.Errorf("read result wait clock: %w", scriptErr(appID, orderNo, err))
	}
	ms, err := strconv.ParseInt(got, 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("result wait clock holds %q", got)
	}
	return time.UnixMilli(ms), nil
}

// CountRejected notes that the provider refused a request of phase
// (PhaseDecision or PhaseEvidence) signed with ticket generation gen, and
// returns how many distinct generations it refused for that phase.
func (s *Store) CountRejected(ctx context.Context, appID, orderNo, phase string, gen int64) (int, error) {
	if phase != PhaseDecision && phase != PhaseEvidence {
		return 0, fmt.Errorf("orderstore: unknown phase %q", phase)
	}
	n, err := rejectScript.Run(ctx, s.rdb, s.keys(appID, orderNo), fieldReject+phase, gen, s.ttl.Milliseconds()).Int()
	if err != nil {
		return 0, fmt.Errorf("count refused tickets: %w", scriptErr(appID, orderNo, err))
	}
	return n, nil
}

// NoteFile remembers a stored evidence file, so a later attempt need not
// fetch it again and a partial set is never forgotten.
func (s *Store) NoteFile(ctx context.Context, appID, orderNo string, f storage.File) error {
	b, err := json.Marshal(f)
	if err != nil {
		return fmt.Errorf("encode stored evidence file: %w", err)
	}
	if err := fileScript.Run(ctx, s.rdb, s.keys(appID, orderNo), fieldFile+f.Kind, b, s.ttl.Milliseconds()).Err(); err != nil {
		return fmt.Errorf("remember stored evidence file: %w", scriptErr(appID, orderNo, err))
	}
	return nil
}

// State is an order's bookkeeping.
type State struct {
	Since    time.Time               // start of the result-wait clock; zero when not running
	NetSince time.Time               // start of the 66660021 clock; zero when not running
	GetFile  string                  // get_file remembered by Decide
	Files    map[string]storage.File // stored evidence files by kind
	Rejected map[string]int          // distinct refused ticket generations by phase
	Revivals map[string]int          // archived tasks the fleet ran again, by phase
}

// State reads the order's bookkeeping; an order without any has a State
// with empty maps.
func (s *Store) State(ctx context.Context, appID, orderNo string) (*State, error) {
	m, err := s.rdb.HGetAll(ctx, stateKey(appID, orderNo)).Result()
	if err != nil {
		return nil, fmt.Errorf("read order state: %w", err)
	}
	st := &State{Files: map[string]storage.File{}, Rejected: map[string]int{}, Revivals: map[string]int{}}
	for k, v := range m {
		switch {
		case k == fieldSince:
			if ms, err := strconv.ParseInt(v, 10, 64); err == nil {
				st.Since = time.UnixMilli(ms)
			}
		case k == fieldNetSince:
			if ms, err := strconv.ParseInt(v, 10, 64); err == nil {
				st.NetSince = time.UnixMilli(ms)
			}
		case k == fieldGetFile:
			st.GetFile = v
		case strings.HasPrefix(k, fieldFile):
			var f storage.File
			if err := json.Unmarshal([]byte(v), &f); err != nil {
				return nil, fmt.Errorf("order state %s: field %s: %w", stateKey(appID, orderNo), k, err)
			}
			st.Files[strings.TrimPrefix(k, fieldFile)] = f
		case strings.HasPrefix(k, fieldReject):
			st.Rejected[strings.TrimPrefix(k, fieldReject)] = len(strings.Split(v, ","))
		case strings.HasPrefix(k, fieldRevivals):
			if n, err := strconv.Atoi(v); err == nil {
				st.Revivals[strings.TrimPrefix(k, fieldRevivals)] = n
			}
		}
	}
	return st, nil
}

// casTries bounds UpdateEvidence's compare-and-set loop; two handlers of
// one order at once is already rare.
const casTries = 20

// UpdateEvidence applies fn to the stored record's evidence and writes the
// result, keeping the record's TTL, unless fn returns false. A record that
// changed between the read and the write is read again and fn applied
// anew, so no update is lost. It returns the record as it stands and its
// JSON.
func (s *Store) UpdateEvidence(ctx context.Context, appID, orderNo string, fn func(*Evidence) bool) (*Record, []byte, error) {
	key := RecordKey(appID, orderNo)
	_, cur, err := s.Get(ctx, appID, orderNo)
	if errors.Is(err, ErrNoRecord) {
		// A purge deletes the record: say so rather than "no record".
		if p, perr := s.Purged(ctx, appID, orderNo); perr == nil && p {
			return nil, nil, fmt.Errorf("%s: %w", key, ErrPurged)
		}
	}
	if err != nil {
		return nil, nil, err
	}
	for range casTries {
		r, err := decode(key, cur)
		if err != nil {
			return nil, nil, err
		}
		wasPending := !r.Final()
		if !fn(&r.Evidence) {
			return r, cur, nil
		}
		if r.Evidence.Files == nil {
			r.Evidence.Files = []storage.File{}
		}
		next, err := json.Marshal(r)
		if err != nil {
			return nil, nil, fmt.Errorf("encode decision record: %w", err)
		}
		var v []any
		if wasPending && r.Final() && s.marksEvents(appID) {
			v, err = evidenceDueScript.Run(ctx, s.rdb, []string{key, stateKey(appID, orderNo), PurgedKey(appID, orderNo), EventsDueKey},
				cur, next, time.Now().UnixMilli(), eventMember(appID, orderNo, EventEvidence)).Slice()
		} else {
			v, err = casScript.Run(ctx, s.rdb, []string{key, PurgedKey(appID, orderNo)}, cur, next).Slice()
		}
		if err != nil {
			return nil, nil, fmt.Errorf("update evidence of %s: %w", key, scriptErr(appID, orderNo, err))
		}
		n, _ := v[0].(int64)
		switch {
		case n == 1:
			return r, next, nil
		case n == -1:
			return nil, nil, fmt.Errorf("%s: %w", key, ErrNoRecord)
		case len(v) == 2:
			s, _ := v[1].(string)
			cur = []byte(s)
		default:
			return nil, nil, fmt.Errorf("update evidence of %s: unexpected answer", key)
		}
	}
	return nil, nil, fmt.Errorf("update evidence of %s: too much contention", key)
}

// Delete removes the order's record and bookkeeping (a purge does it once
// the marker is set; the marker stays).
func (s *Store) Delete(ctx context.Context, appID, orderNo string) error {
	// The fleet-wide sets name the order too: its due events and
	// revivals under way go with it, in one transaction.
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Del(ctx, RecordKey(appID, orderNo), stateKey(appID, orderNo))
		p.ZRem(ctx, EventsDueKey, eventMember(appID, orderNo, EventDecision), eventMember(appID, orderNo, EventEvidence))
		p.ZRem(ctx, JournalKey, journalMember(PhaseDecision, appID, orderNo), journalMember(PhaseEvidence, appID, orderNo))
		return nil
	})
	if err != nil {
		return fmt.Errorf("delete order state: %w", err)
	}
	return nil
}

// keys are the KEYS of the write scripts that take the record, the
// bookkeeping and the purge marker.
func (s *Store) keys(appID, orderNo string) []string {
	return []string{RecordKey(appID, orderNo), stateKey(appID, orderNo), PurgedKey(appID, orderNo)}
}
