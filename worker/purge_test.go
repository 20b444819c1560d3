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
	b := workertest.New(t, workertest.Options{NoStart: true})
	ctx := context.Background()
	mux := b.Worker.ServeMux()
	for _, tt := range []struct{ typ, payload string }{
		{tasks.TypeFetchResult, `{"app_id":"` + appID + `","order_no":"ord-purged","get_file":"1"}`},
		{tasks.TypeFetchEvidence, `{"app_id":"` + appID + `","order_no":"ord-purged","get_file":"1","decided_at":"2026-12-01T00:00:00Z"}`},
	} {
		if err := b.Store.MarkPurged(ctx, appID, "ord-purged", time.Now()); err != nil {
			t.Fatal(err)
		}
		err := mux.ProcessTask(ctx, asynq.NewTask(tt.typ, []byte(tt.payload)))
		if !errors.Is(err, asynq.SkipRetry) || !strings.Contains(err.Error(), "was purged") {
			t.Errorf("%s of a purged order: error %v, want SkipRetry saying it was purged", tt.typ, err)
		}
	}
	if n := b.SyncRequests("ord-purged", false) + b.SyncRequests("ord-purged", true); n != 0 {
		t.Errorf("%d provider requests for a purged order", n)
	}

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
