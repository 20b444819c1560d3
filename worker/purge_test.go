package worker_test

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/facesync/facesync/tasks"
	"github.com/facesync/facesync/worker"
	"github.com/facesync/facesync/worker/idasc"
	"github.com/facesync/facesync/worker/orderstore"
	"github.com/facesync/facesync/worker/workertest"
)

// purgingProvider purges the order (sets its marker) while the provider
// answers: the purge comes in the middle of the task.
type purgingProvider struct {
	next  *idasc.Client
	store *orderstore.Store
}

func (p purgingProvider) Sync(ctx context.Context, req idasc.SyncRequest) (*idasc.Result, error) {
	if err := p.store.MarkPurged(ctx, req.AppID, req.OrderNo, time.Now()); err != nil {
		return nil, err
	}
	return p.next.Sync(ctx, req)
}

func (p purgingProvider) SyncEvidence(ctx context.Context, req idasc.SyncRequest, getFile string, maxBytes int64, fn func(string, io.Reader) error) (*idasc.Result, error) {
	return p.next.SyncEvidence(ctx, req, getFile, maxBytes, fn)
}

// TestPurgedOrderArchived: a task of a purged order is archived before any
// provider call, saying the order was purged; a task whose order is purged
// while it runs writes nothing and ends the same way.
func TestPurgedOrderArchived(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	// The marker is read in the pacing's round trip, or alone without
	// pacing; the evidence task meets a record the purge deleted, or one
	// it has not deleted yet.
	for _, noPacing := range []bool{false, true} {
		b := workertest.New(t, workertest.Options{NoStart: true, NoPacing: noPacing})
		mux := b.Worker.ServeMux()
		if _, err := b.Store.Decide(ctx, &orderstore.Record{Decision: orderstore.Decision{AppID: appID, OrderNo: "ord-kept", Status: orderstore.StatusPassed},
			Evidence: orderstore.Evidence{Status: orderstore.EvidencePending}}, "1"); err != nil {
			t.Fatal(err)
		}
		for _, tt := range []struct{ typ, order, payload string }{
			{tasks.TypeFetchResult, "ord-purged", `{"app_id":"` + appID + `","order_no":"ord-purged","get_file":"1"}`},
			{tasks.TypeFetchEvidence, "ord-purged", `{"app_id":"` + appID + `","order_no":"ord-purged","get_file":"1","decided_at":"2026-12-01T00:00:00Z"}`},
			{tasks.TypeFetchEvidence, "ord-kept", `{"app_id":"` + appID + `","order_no":"ord-kept","get_file":"1","decided_at":"2026-12-01T00:00:00Z"}`},
		} {
			if err := b.Store.MarkPurged(ctx, appID, tt.order, time.Now()); err != nil {
				t.Fatal(err)
			}
			err := mux.ProcessTask(ctx, asynq.NewTask(tt.typ, []byte(tt.payload)))
			if !errors.Is(err, asynq.SkipRetry) || !strings.Contains(err.Error(), "was purged") {
				t.Errorf("no pacing %v: %s of purged order %s: error %v, want SkipRetry saying it was purged", noPacing, tt.typ, tt.order, err)
			}
			if n := b.SyncRequests(tt.order, false) + b.SyncRequests(tt.order, true); n != 0 {
				t.Errorf("no pacing %v: %d provider requests for purged order %s", noPacing, n, tt.order)
			}
		}
	}

	b := workertest.New(t, workertest.Options{NoStart: true})

	w, err := worker.New(b.Config, worker.Deps{
		Redis: b.DB.Client, Provider: purgingProvider{idasc.New(b.Fake.URL), b.Store}, Tickets: b.Tickets, Sink: b.Sink,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Shutdown)
	err = w.ServeMux().ProcessTask(ctx, asynq.NewTask(tasks.TypeFetchResult, []byte(`{"app_id":"`+appID+`","order_no":"ord-mid"}`)))
	if !errors.Is(err, asynq.SkipRetry) || !strings.Contains(err.Error(), "was purged") {
		t.Errorf("task purged mid-way: error %v, want SkipRetry saying it was purged", err)
	}
	for _, k := range b.Keys(t) {
		if strings.Contains(k, "ord-") {
			t.Errorf("object %s written for a purged order", k)
		}
	}
	if keys := b.DB.Client.Keys(ctx, "*ord-*").Val(); len(keys) != 0 {
		t.Errorf("Redis keys written for a purged order: %v", keys)
	}
	if p, err := b.Store.Purged(ctx, appID, "ord-mid"); err != nil || !p {
		t.Fatalf("the purge during the task left no marker: %v, %v", p, err)
	}
}
