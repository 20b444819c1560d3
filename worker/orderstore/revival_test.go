package orderstore_test

import (
	"context"
	"testing"
	"time"

	"github.com/facesync/facesync/ticketcache/ticketcachetest"
	"github.com/facesync/facesync/worker/orderstore"
)

// TestRevivalJournal counts revivals per phase, journals each until it is
// done, expires the bookkeeping like every other write, and reads the
// purge marker.
func TestRevivalJournal(t *testing.T) {
	t.Parallel()
	db := ticketcachetest.NewDB(t)
	s := newStore(t, db.Client, time.Hour)
	ctx := context.Background()
	past := time.Now().Add(-time.Minute)
	for want := 1; want <= 2; want++ {
		n, err := s.NoteRevival(ctx, "A", "O", orderstore.PhaseDecision, []byte(`{"p":1}`), past)
		if err != nil || n != want {
			t.Fatalf("NoteRevival #%d = %d, %v", want, n, err)
		}
	}
	if n, err := s.NoteRevival(ctx, "A", "O", orderstore.PhaseEvidence, []byte(`{"p":2}`), past); err != nil || n != 1 {
		t.Fatalf("NoteRevival(evidence) = %d, %v, want 1: phases count apart", n, err)
	}
	if _, err := s.NoteRevival(ctx, "A", "O", "other", nil, past); err == nil {
		t.Errorf("NoteRevival(unknown phase) = nil error")
	}
	st, err := s.State(ctx, "A", "O")
	if err != nil || st.Revivals[orderstore.PhaseDecision] != 2 || st.Revivals[orderstore.PhaseEvidence] != 1 {
		t.Errorf("State revivals = %v (%v), want decision 2 evidence 1", st.Revivals, err)
	}
	if ttl := db.Client.PTTL(ctx, "facesync:order:A:O").Val(); ttl <= 0 || ttl > time.Hour {
		t.Errorf("bookkeeping TTL = %v, want within the store's hour", ttl)
	}

	got, err := s.PendingRevivals(ctx, time.Now(), 10)
	if err != nil || len(got) != 2 {
		t.Fatalf("PendingRevivals = %+v, %v, want 2", got, err)
	}
	for _, p := range got {
		want := map[string]string{orderstore.PhaseDecision: `{"p":1}`, orderstore.PhaseEvidence: `{"p":2}`}[p.Phase]
		if p.AppID != "A" || p.OrderNo != "O" || string(p.Payload) != want {
			t.Errorf("pending revival %+v, want A:O payload %s", p, want)
		}
	}
	if got, _ := s.PendingRevivals(ctx, past.Add(-time.Second), 10); len(got) != 0 {
		t.Errorf("PendingRevivals before the notes = %+v, want none", got)
	}
	if err := s.RevivalDone(ctx, "A", "O", orderstore.PhaseDecision); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.PendingRevivals(ctx, time.Now(), 10); len(got) != 1 || got[0].Phase != orderstore.PhaseEvidence {
		t.Errorf("PendingRevivals after one is done = %+v, want the evidence one", got)
	}
	if st, _ := s.State(ctx, "A", "O"); st.Revivals[orderstore.PhaseDecision] != 2 {
		t.Errorf("RevivalDone changed the count: %v", st.Revivals)
	}

	if p, err := s.Purged(ctx, "A", "O"); err != nil || p {
		t.Errorf("Purged before a marker = %v, %v", p, err)
	}
	// The contract's marker: the hex SHA-256 of "A:O".
	const key = "facesync:purged:977b3534821c658b554c30a896462caa030fba7244b49fea60eaf9ce7d7f1a26"
	if got := orderstore.PurgedKey("A", "O"); got != key {
		t.Errorf("PurgedKey = %q, want %q", got, key)
	}
	db.Client.Set(ctx, key, "1", time.Minute)
	if p, err := s.Purged(ctx, "A", "O"); err != nil || !p {
		t.Errorf("Purged with a marker = %v, %v", p, err)
	}
}
