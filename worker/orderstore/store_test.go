package orderstore_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/facesync/facesync/storage"
	"github.com/facesync/facesync/ticketcache/ticketcachetest"
	"github.com/facesync/facesync/worker/orderstore"
)

func newStore(t *testing.T, rdb redis.UniversalClient, ttl time.Duration) *orderstore.Store {
	t.Helper()
	s, err := orderstore.New(rdb, orderstore.Config{TTL: ttl})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func pending(app, order string) *orderstore.Record {
	return &orderstore.Record{
		Decision: orderstore.Decision{AppID: app, OrderNo: order, Status: orderstore.StatusPassed, Code: "0"},
		Evidence: orderstore.Evidence{Status: orderstore.EvidencePending, Files: []storage.File{}},
	}
}

// TestKeysFrozen guards the public record key (partners read it) and the
// bookkeeping key: renaming either strands every order in flight.
func TestKeysFrozen(t *testing.T) {
	t.Parallel()
	mr := miniredis.RunT(t)
	s := newStore(t, redis.NewClient(&redis.Options{Addr: mr.Addr()}), time.Hour)
	ctx := context.Background()
	if got := orderstore.RecordKey("TIDA0001", "ord1"); got != "facesync:decision:TIDA0001:ord1" {
		t.Errorf("RecordKey = %q", got)
	}
	if _, err := s.Decide(ctx, pending("A", "O"), "1"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.NoteNotReady(ctx, "A", "O", time.Now()); err != nil {
		t.Fatal(err)
	}
	keys := mr.Keys()
	want := []string{"facesync:decision:A:O", "facesync:order:A:O"}
	if fmt.Sprint(keys) != fmt.Sprint(want) {
		t.Errorf("keys = %v, want %v", keys, want)
	}
}

func TestFirstDecisionWins(t *testing.T) {
	t.Parallel()
	mr := miniredis.RunT(t)
	s := newStore(t, redis.NewClient(&redis.Options{Addr: mr.Addr()}), time.Hour)
	ctx := context.Background()
	first := pending("A", "O")
	d, err := s.Decide(ctx, first, "2")
	if err != nil || !d.Created || d.Record.Status != orderstore.StatusPassed || d.GetFile != "2" {
		t.Fatalf("Decide(first) = %+v, %v", d, err)
	}
	second := &orderstore.Record{Decision: orderstore.Decision{AppID: "A", OrderNo: "O", Status: orderstore.StatusError, Code: orderstore.CodeRetriesExhausted}}
	d, err = s.Decide(ctx, second, "1")
	if err != nil || d.Created || d.Record.Status != orderstore.StatusPassed || d.GetFile != "2" {
		t.Fatalf("Decide(second) = %+v, %v, want the first record and its get_file kept", d, err)
	}
	var stored orderstore.Record
	if err := json.Unmarshal(d.Raw, &stored); err != nil || stored.Status != orderstore.StatusPassed {
		t.Errorf("raw record %s (%v), want the first one", d.Raw, err)
	}
	for _, k := range []string{"facesync:decision:A:O", "facesync:order:A:O"} {
		if ttl := mr.TTL(k); ttl != time.Hour {
			t.Errorf("TTL(%s) = %v, want 1h", k, ttl)
		}
	}
	got, raw, err := s.Get(ctx, "A", "O")
	if err != nil || got.Status != orderstore.StatusPassed || string(raw) != string(d.Raw) {
		t.Errorf("Get = %+v, %s, %v", got, raw, err)
	}
	if _, _, err := s.Get(ctx, "A", "none"); !errors.Is(err, orderstore.ErrNoRecord) {
		t.Errorf("Get(no record) error = %v, want ErrNoRecord", err)
	}
}

// TestBookkeepingExpiresWithRecord: state written before the decision
// lives the TTL from its first write; once a record exists, every later
// write takes the record's remaining lifetime, so nothing outlives it.
func TestBookkeepingExpiresWithRecord(t *testing.T) {
	t.Parallel()
	mr := miniredis.RunT(t)
	s := newStore(t, redis.NewClient(&redis.Options{Addr: mr.Addr()}), time.Hour)
	ctx := context.Background()
	t0 := time.UnixMilli(1_700_000_000_000)
	if _, err := s.NoteNotReady(ctx, "A", "O", t0); err != nil {
		t.Fatal(err)
	}
	mr.FastForward(10 * time.Minute)
	if _, err := s.CountRejected(ctx, "A", "O", orderstore.PhaseDecision, 7); err != nil {
		t.Fatal(err)
	}
	if ttl := mr.TTL("facesync:order:A:O"); ttl != 50*time.Minute {
		t.Errorf("state TTL before a record = %v, want 50m (1h from its first write)", ttl)
	}
	if _, err := s.Decide(ctx, pending("A", "O"), "1"); err != nil {
		t.Fatal(err)
	}
	mr.FastForward(20 * time.Minute)
	if err := s.NoteFile(ctx, "A", "O", storage.File{Kind: storage.KindPhoto, Key: "k", Size: 1}); err != nil {
		t.Fatal(err)
	}
	if rec, st := mr.TTL("facesync:decision:A:O"), mr.TTL("facesync:order:A:O"); rec != 40*time.Minute || st != rec {
		t.Errorf("TTLs after a file: record %v, state %v, want both 40m", rec, st)
	}
}

func TestResultWaitClockStartsOnce(t *testing.T) {
	t.Parallel()
	mr := miniredis.RunT(t)
	s := newStore(t, redis.NewClient(&redis.Options{Addr: mr.Addr()}), time.Hour)
	t0 := time.UnixMilli(1_700_000_000_000)
	got, err := s.NoteNotReady(context.Background(), "A", "O", t0)
	if err != nil || !got.Equal(t0) {
		t.Fatalf("NoteNotReady first = %v, %v", got, err)
	}
	got, err = s.NoteNotReady(context.Background(), "A", "O", t0.Add(time.Minute))
	if err != nil || !got.Equal(t0) {
		t.Fatalf("NoteNotReady later = %v, %v, want the first time %v", got, err, t0)
	}
	st, err := s.State(context.Background(), "A", "O")
	if err != nil || !st.Since.Equal(t0) || !st.NetSince.IsZero() {
		t.Errorf("State() = %+v, %v, want Since %v and no 66660021 clock", st, err, t0)
	}
	// The 66660021 clock is the order's second, started on its own.
	t1 := t0.Add(2 * time.Minute)
	for _, at := range []time.Time{t1, t1.Add(time.Minute)} {
		got, err = s.NoteProviderNetwork(context.Background(), "A", "O", at)
		if err != nil || !got.Equal(t1) {
			t.Fatalf("NoteProviderNetwork(%v) = %v, %v, want the first time %v", at, got, err, t1)
		}
	}
	st, err = s.State(context.Background(), "A", "O")
	if err != nil || !st.Since.Equal(t0) || !st.NetSince.Equal(t1) {
		t.Errorf("State() = %+v, %v, want Since %v and NetSince %v", st, err, t0, t1)
	}
}

func TestCountRejectedDistinctPerPhase(t *testing.T) {
	t.Parallel()
	db := ticketcachetest.NewDB(t)
	s := newStore(t, db.Client, time.Hour)
	ctx := context.Background()
	steps := []struct {
		phase string
		gen   int64
		want  int
	}{
		{orderstore.PhaseDecision, 1, 1},
		{orderstore.PhaseDecision, 1, 1}, // the same generation again
		{orderstore.PhaseDecision, 2, 2},
		{orderstore.PhaseEvidence, 2, 1}, // phases count apart
		{orderstore.PhaseDecision, 3, 3},
	}
	for _, st := range steps {
		n, err := s.CountRejected(ctx, "A", "O", st.phase, st.gen)
		if err != nil || n != st.want {
			t.Fatalf("CountRejected(%s, %d) = %d, %v, want %d", st.phase, st.gen, n, err, st.want)
		}
	}
	if _, err := s.CountRejected(ctx, "A", "O", "other", 1); err == nil {
		t.Errorf("CountRejected accepted an unknown phase")
	}
	st, err := s.State(ctx, "A", "O")
	if err != nil || st.Rejected[orderstore.PhaseDecision] != 3 || st.Rejected[orderstore.PhaseEvidence] != 1 {
		t.Errorf("State().Rejected = %v, %v", st.Rejected, err)
	}
}

func TestFilesRemembered(t *testing.T) {
	t.Parallel()
	db := ticketcachetest.NewDB(t)
	s := newStore(t, db.Client, time.Hour)
	ctx := context.Background()
	photo := storage.File{Kind: storage.KindPhoto, Key: "evidence/A/O/photo.jpg", ContentType: storage.TypeJPEG, Size: 3, SHA256: "ab"}
	video := storage.File{Kind: storage.KindVideo, Key: "evidence/A/O/video.mp4", ContentType: storage.TypeMP4, Size: 5, SHA256: "cd"}
	for _, f := range []storage.File{photo, video, photo} {
		if err := s.NoteFile(ctx, "A", "O", f); err != nil {
			t.Fatal(err)
		}
	}
	st, err := s.State(ctx, "A", "O")
	if err != nil || len(st.Files) != 2 || st.Files[storage.KindPhoto] != photo || st.Files[storage.KindVideo] != video {
		t.Errorf("State().Files = %+v, %v", st.Files, err)
	}
	// A corrupted field is an error, not a silently forgotten file.
	db.Client.HSet(ctx, "facesync:order:A:O", "file:photo", "{not json")
	if _, err := s.State(ctx, "A", "O"); err == nil {
		t.Errorf("State() read a corrupted file entry without error")
	}
}

// TestUpdateEvidenceNoLostUpdate runs many concurrent read-modify-writes on
// one record on a real Redis: each appends a file, none may be lost.
func TestUpdateEvidenceNoLostUpdate(t *testing.T) {
	t.Parallel()
	db := ticketcachetest.NewDB(t)
	s := newStore(t, db.Client, time.Hour)
	ctx := context.Background()
	if _, err := s.Decide(ctx, pending("A", "O"), "1"); err != nil {
		t.Fatal(err)
	}
	const n = 16
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			_, _, err := s.UpdateEvidence(ctx, "A", "O", func(e *orderstore.Evidence) bool {
				e.Files = append(e.Files, storage.File{Kind: fmt.Sprint(i)})
				return true
			})
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	r, _, err := s.Get(ctx, "A", "O")
	if err != nil || len(r.Evidence.Files) != n {
		t.Fatalf("after %d concurrent updates the record has %d files (%v), want %d", n, len(r.Evidence.Files), err, n)
	}
	if ttl := db.Client.TTL(ctx, orderstore.RecordKey("A", "O")).Val(); ttl <= 0 {
		t.Errorf("TTL after updates = %v, want kept", ttl)
	}
	// fn returning false changes nothing.
	_, raw, err := s.UpdateEvidence(ctx, "A", "O", func(*orderstore.Evidence) bool { return false })
	if _, now, _ := s.Get(ctx, "A", "O"); err != nil || string(raw) != string(now) {
		t.Errorf("UpdateEvidence(no change) = %s, %v; stored %s", raw, err, now)
	}
	if _, _, err := s.UpdateEvidence(ctx, "A", "none", func(*orderstore.Evidence) bool { return true }); !errors.Is(err, orderstore.ErrNoRecord) {
		t.Errorf("UpdateEvidence(no record) error = %v, want ErrNoRecord", err)
	}
}

func TestDeleteRemovesEveryKey(t *testing.T) {
	t.Parallel()
	mr := miniredis.RunT(t)
	s := newStore(t, redis.NewClient(&redis.Options{Addr: mr.Addr()}), time.Hour)
	ctx := context.Background()
	if _, err := s.Decide(ctx, pending("A", "O"), "1"); err != nil {
		t.Fatal(err)
	}
	if err := s.NoteFile(ctx, "A", "O", storage.File{Kind: storage.KindPhoto}); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, "A", "O"); err != nil {
		t.Fatal(err)
	}
	if keys := mr.Keys(); len(keys) != 0 {
		t.Errorf("keys after Delete = %v, want none", keys)
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	if err := (orderstore.Config{TTL: time.Second}).Validate(); err == nil {
		t.Errorf("Validate accepted a TTL of 1s")
	}
	if err := (orderstore.Config{}).Validate(); err != nil {
		t.Errorf("Validate(zero) = %v, want nil (defaults)", err)
	}
	if _, err := orderstore.New(nil, orderstore.Config{}); err == nil {
		t.Errorf("New(nil) accepted no client")
	}
}

// TestPurgeMarker: once the marker is set, every write of the store fails
// with ErrPurged and writes nothing, on a real Redis (the scripts' error
// reply is Redis's, not miniredis's). The marker's key holds no order
// number and lives 96 hours.
func TestPurgeMarker(t *testing.T) {
	t.Parallel()
	db := ticketcachetest.NewDB(t)
	s := newStore(t, db.Client, time.Hour)
	ctx := context.Background()
	if _, err := s.Decide(ctx, pending("A", "kept"), "1"); err != nil {
		t.Fatal(err)
	}
	if got, want := orderstore.PurgedKey("TIDA0001", "ord1"), "facesync:purged:"+sha256Hex("TIDA0001:ord1"); got != want {
		t.Errorf("PurgedKey = %q, want %q", got, want)
	}
	for _, order := range []string{"O", "kept"} {
		if p, err := s.Purged(ctx, "A", order); err != nil || p {
			t.Fatalf("Purged(%s) before MarkPurged = %v, %v", order, p, err)
		}
		if err := s.MarkPurged(ctx, "A", order, time.Now()); err != nil {
			t.Fatal(err)
		}
		if p, err := s.Purged(ctx, "A", order); err != nil || !p {
			t.Fatalf("Purged(%s) after MarkPurged = %v, %v", order, p, err)
		}
	}
	if ttl := db.Client.TTL(ctx, orderstore.PurgedKey("A", "O")).Val(); ttl <= 95*time.Hour || ttl > 96*time.Hour {
		t.Errorf("marker TTL = %v, want 96h", ttl)
	}
	writes := map[string]func(order string) error{
		"Decide": func(o string) error { _, err := s.Decide(ctx, pending("A", o), "1"); return err },
		"NoteNotReady": func(o string) error {
			_, err := s.NoteNotReady(ctx, "A", o, time.Now())
			return err
		},
		"CountRejected": func(o string) error {
			_, err := s.CountRejected(ctx, "A", o, orderstore.PhaseDecision, 7)
			return err
		},
		"NoteFile": func(o string) error { return s.NoteFile(ctx, "A", o, storage.File{Kind: storage.KindPhoto}) },
		"UpdateEvidence": func(o string) error {
			_, _, err := s.UpdateEvidence(ctx, "A", o, func(e *orderstore.Evidence) bool { e.Status = orderstore.EvidenceFailed; return true })
			return err
		},
	}
	for name, write := range writes {
		for _, order := range []string{"O", "kept"} {
			if err := write(order); !errors.Is(err, orderstore.ErrPurged) {
				t.Errorf("%s(%s) after the purge marker: error %v, want ErrPurged", name, order, err)
			}
		}
	}
	// Nothing written for O; kept's record as it was before the marker.
	keys := db.Client.Keys(ctx, "*").Val()
	sort.Strings(keys)
	want := []string{"facesync:decision:A:kept", "facesync:order:A:kept", orderstore.PurgedKey("A", "O"), orderstore.PurgedKey("A", "kept")}
	sort.Strings(want)
	if fmt.Sprint(keys) != fmt.Sprint(want) {
		t.Errorf("keys = %v, want %v", keys, want)
	}
	r, _, err := s.Get(ctx, "A", "kept")
	if err != nil || r.Evidence.Status != orderstore.EvidencePending {
		t.Errorf("record of kept = %+v, %v, want it unchanged (pending)", r, err)
	}
	if err := s.Delete(ctx, "A", "kept"); err != nil {
		t.Fatal(err)
	}
	if n := db.Client.Exists(ctx, "facesync:decision:A:kept", "facesync:order:A:kept").Val(); n != 0 {
		t.Errorf("%d keys of the order left after Delete", n)
	}
}

func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// TestDecideWithResult: the stored record (the first decision, also for a
// duplicate) becomes the task hash's result in the same script; a hash
// that does not exist is not created.
func TestDecideWithResult(t *testing.T) {
	t.Parallel()
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	s := newStore(t, rdb, time.Hour)
	ctx := context.Background()
	mr.HSet("asynq:{facesync}:t:A:O", "state", "active")
	d, err := s.DecideWithResult(ctx, pending("A", "O"), "1", "asynq:{facesync}:t:A:O")
	if err != nil || !d.Created {
		t.Fatalf("DecideWithResult = %+v, %v", d, err)
	}
	if got := mr.HGet("asynq:{facesync}:t:A:O", "result"); got != string(d.Raw) {
		t.Errorf("task result = %s, want the record %s", got, d.Raw)
	}
	mr.HSet("asynq:{facesync}:t:dup", "state", "active")
	second := &orderstore.Record{Decision: orderstore.Decision{AppID: "A", OrderNo: "O", Status: orderstore.StatusError}}
	if _, err := s.DecideWithResult(ctx, second, "1", "asynq:{facesync}:t:dup"); err != nil {
		t.Fatal(err)
	}
	if got := mr.HGet("asynq:{facesync}:t:dup", "result"); got != string(d.Raw) {
		t.Errorf("duplicate's task result = %s, want the first record", got)
	}
	if _, err := s.DecideWithResult(ctx, pending("A", "P"), "1", "asynq:{facesync}:t:gone"); err != nil {
		t.Fatal(err)
	}
	if mr.Exists("asynq:{facesync}:t:gone") {
		t.Errorf("DecideWithResult created a task hash that did not exist")
	}
}
