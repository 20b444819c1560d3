package api_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/facesync/facesync/tasks"
)

// benchClients is how many keep-alive clients send at once, in both
// halves of the benchmark.
const benchClients = 16

// BenchmarkPostOrder measures POST /v1/orders of new orders on one API
// process with keep-alive clients, and in the same run enqueueing as many
// orders through asynq directly (tasks.Enqueue, what `facesync enqueue`
// does), reporting both rates and their ratio.
func BenchmarkPostOrder(b *testing.B) {
	bd := setup(b, options{discardLogs: true})
	tr := &http.Transport{MaxIdleConnsPerHost: benchClients, MaxConnsPerHost: benchClients}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr}
	ctx := context.Background()
	var failed atomic.Int64
	run := func(n int, prefix string, one func(orderNo string) error) time.Duration {
		var next atomic.Int64
		var wg sync.WaitGroup
		start := time.Now()
		for c := 0; c < benchClients; c++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					i := next.Add(1)
					if i > int64(n) {
						return
					}
					if err := one(fmt.Sprintf("%s%d", prefix, i)); err != nil {
						if failed.Add(1) == 1 {
							b.Errorf("%s: %v", prefix, err)
						}
						return
					}
				}
			}()
		}
		wg.Wait()
		return time.Since(start)
	}
	b.ResetTimer()
	apiTime := run(b.N, fmt.Sprintf("api%d-", b.N), func(orderNo string) error {
		req, err := http.NewRequest(http.MethodPost, bd.url+"/v1/orders",
			strings.NewReader(`{"app_id":"TIDA0001","order_no":"`+orderNo+`"}`))
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+bd.keyAll)
		req.Header.Set("Content-Type", "application/json")
		resp, err := hc.Do(req)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			return fmt.Errorf("POST = %d, want 202", resp.StatusCode)
		}
		return nil
	})
	directTime := run(b.N, fmt.Sprintf("direct%d-", b.N), func(orderNo string) error {
		dup, err := tasks.Enqueue(ctx, bd.enq, tasks.FetchResult{AppID: appB, OrderNo: orderNo})
		if err == nil && dup {
			err = fmt.Errorf("order %s already queued", orderNo)
		}
		return err
	})
	b.StopTimer()
	apiRate := float64(b.N) / apiTime.Seconds()
	directRate := float64(b.N) / directTime.Seconds()
	b.ReportMetric(apiRate, "api_req/s")
	b.ReportMetric(directRate, "asynq_enq/s")
	b.ReportMetric(apiRate/directRate, "api/asynq")
}
