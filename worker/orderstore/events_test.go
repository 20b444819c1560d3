package orderstore_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/facesync/facesync/storage"
	"github.com/facesync/facesync/ticketcache/ticketcachetest"
	"github.com/facesync/facesync/worker/orderstore"
)

// eventStore is a store on a clean database whose app "HOOK" has webhooks.
func eventStore(t *testing.T) (*orderstore.Store, *ticketcachetest.DB) {
	t.Helper()
	db := ticketcachetest.NewDB(t)
	s, err := orderstore.New(db.Client, orderstore.Config{TTL: time.Hour, EventsFunc: func(app string) bool { return app == "HOOK" }})
	if err != nil {
		t.Fatal(err)
	}
	return s, db
}

func dueMembers(t *testing.T, db *ticketcachetest.DB) []string {
	t.Helper()
	m, err := db.Client.ZRange(context.Background(), orderstore.EventsDueKey, 0, -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestEventsMarkedWithTheirTransition(t *testing.T) {
	t.Parallel()
	s, db := eventStore(t)
	ctx := context.Background()
	if got := orderstore.EventsDueKey; got != "facesync:events_due" {
		t.Errorf("EventsDueKey = %q", got)
	}

	// Decide marks the decision event due, carrying the record as written.
	d, err := s.Decide(ctx, pending("HOOK", "o1"), "1")
	if err != nil || !d.Created {
		t.Fatalf("Decide = %+v, %v", d, err)
	}
	ev, err := s.DueEvents(ctx, "HOOK", "o1")
	if err != nil || len(ev.Due) != 1 || string(ev.Due[orderstore.EventDecision]) != string(d.Raw) {
		t.Fatalf("DueEvents after Decide = %+v, %v, want decision carrying %s", ev, err, d.Raw)
	}
	if m := dueMembers(t, db); len(m) != 1 || m[0] != "HOOK:o1:decision" {
		t.Errorf("due set = %v, want [HOOK:o1:decision]", m)
	}
	// A duplicate decision marks nothing more.
	if _, err := s.Decide(ctx, pending("HOOK", "o1"), "1"); err != nil {
		t.Fatal(err)
	}
	// Pending to stored marks the evidence event, with the final record.
	stored := func(e *orderstore.Evidence) bool {
		*e = orderstore.Evidence{Status: orderstore.EvidenceStored, Files: []storage.File{{Kind: "photo", Key: "k"}}}
		return true
	}
	_, raw, err := s.UpdateEvidence(ctx, "HOOK", "o1", stored)
	if err != nil {
		t.Fatal(err)
	}
	ev, _ = s.DueEvents(ctx, "HOOK", "o1")
	if string(ev.Due[orderstore.EventEvidence]) != string(raw) {
		t.Errorf("evidence event carries %s, want the record as stored %s", ev.Due[orderstore.EventEvidence], raw)
	}
	var rec orderstore.Record
	if err := json.Unmarshal(ev.Due[orderstore.EventDecision], &rec); err != nil || rec.Evidence.Status != orderstore.EvidencePending {
		t.Errorf("decision event's record = %+v, %v, want it as it stood at the decision (evidence pending)", rec, err)
	}
	if m := dueMembers(t, db); len(m) != 2 {
		t.Errorf("due set = %v, want both events", m)
	}
	// The bookkeeping keeps expiring with the record.
	if ttl := db.Client.PTTL(ctx, "facesync:order:HOOK:o1").Val(); ttl <= 0 || ttl > time.Hour {
		t.Errorf("bookkeeping TTL = %v, want the record's", ttl)
	}

	// Delivered: done, off the due set, never marked again.
	for _, e := range []string{orderstore.EventDecision, orderstore.EventEvidence} {
		if err := s.EventQueued(ctx, "HOOK", "o1", e); err != nil {
			t.Fatal(err)
		}
		if was, err := s.MarkDelivered(ctx, "HOOK", "o1", e); err != nil || !was {
			t.Errorf("MarkDelivered(%s) = %v, %v, want true", e, was, err)
		}
		if was, err := s.MarkDelivered(ctx, "HOOK", "o1", e); err != nil || was {
			t.Errorf("MarkDelivered(%s) again = %v, %v, want false", e, was, err)
		}
	}
	ev, _ = s.DueEvents(ctx, "HOOK", "o1")
	if len(ev.Due) != 0 || !ev.Delivered[orderstore.EventDecision] || !ev.Delivered[orderstore.EventEvidence] {
		t.Errorf("DueEvents after delivery = %+v", ev)
	}
	if m := dueMembers(t, db); len(m) != 0 {
		t.Errorf("due set after delivery = %v, want empty", m)
	}
	// A later change of a final record marks nothing (only pending to final does).
	if _, _, err := s.UpdateEvidence(ctx, "HOOK", "o1", stored); err != nil {
		t.Fatal(err)
	}
	if ev, _ = s.DueEvents(ctx, "HOOK", "o1"); len(ev.Due) != 0 {
		t.Errorf("DueEvents after a second update = %+v, want none due", ev)
	}
}

func TestEventsOnlyForAppsWithWebhooks(t *testing.T) {
	t.Parallel()
	s, db := eventStore(t)
	ctx := context.Background()
	if _, err := s.Decide(ctx, pending("PLAIN", "o1"), "1"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.UpdateEvidence(ctx, "PLAIN", "o1", func(e *orderstore.Evidence) bool { e.Status = orderstore.EvidenceUnavailable; return true }); err != nil {
		t.Fatal(err)
	}
	if ev, _ := s.DueEvents(ctx, "PLAIN", "o1"); len(ev.Due)+len(ev.Delivered) != 0 {
		t.Errorf("events of an app without webhook = %+v, want none", ev)
	}
	if m := dueMembers(t, db); len(m) != 0 {
		t.Errorf("due set = %v, want empty", m)
	}
	// Evidence skipped: the decision event only.
	skipped := pending("HOOK", "o2")
	skipped.Evidence.Status = orderstore.EvidenceSkipped
	if _, err := s.Decide(ctx, skipped, "0"); err != nil {
		t.Fatal(err)
	}
	if ev, _ := s.DueEvents(ctx, "HOOK", "o2"); len(ev.Due) != 1 || ev.Due[orderstore.EventDecision] == nil {
		t.Errorf("events of a skipped order = %+v, want decision only", ev)
	}
}

func TestDueOrders(t *testing.T) {
	t.Parallel()
	s, db := eventStore(t)
	ctx := context.Background()
	for _, o := range []string{"o1", "o2", "o3"} {
		if _, err := s.Decide(ctx, pending("HOOK", o), "1"); err != nil {
			t.Fatal(err)
		}
	}
	db.Client.ZAdd(ctx, orderstore.EventsDueKey, redis.Z{Score: 0, Member: "garbage"})
	if got, err := s.DueOrders(ctx, time.Now().Add(-time.Hour), 10); err != nil || len(got) != 0 {
		t.Errorf("DueOrders(an hour ago) = %v, %v, want none", got, err)
	}
	got, err := s.DueOrders(ctx, time.Now(), 2)
	if err != nil || len(got) != 2 || got[0].AppID != "HOOK" || got[0].Event != orderstore.EventDecision || got[0].DueAt.IsZero() {
		t.Fatalf("DueOrders(now, 2) = %+v, %v", got, err)
	}
	if err := s.EventQueued(ctx, "HOOK", got[0].OrderNo, got[0].Event); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.DueOrders(ctx, time.Now(), 10); len(got) != 2 {
		t.Errorf("DueOrders after one queued = %+v, want 2 (the malformed member dropped)", got)
	}
	if m := dueMembers(t, db); len(m) != 2 {
		t.Errorf("due set = %v, want the 2 unqueued events", m)
	}
}
