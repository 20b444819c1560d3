package faults

import (
	"context"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/facesync/facesync/worker/idasc/idasctest"
)

// provider is the fake provider behind a handler that can slow down the
// evidence answers of chosen orders, so that a test can act while an
// upload is under way.
type provider struct {
	*idasctest.Fake
	URL string

	mu   sync.Mutex
	slow map[string]*slowdown // by order number
}

func newProvider(f *idasctest.Fake) *provider {
	return &provider{Fake: f, slow: map[string]*slowdown{}}
}

// slowdown paces the next few evidence answers of one order.
type slowdown struct {
	rate    int64        // bytes per second
	left    int          // answers still to slow, under provider.mu
	written atomic.Int64 // bytes of slowed answers written so far
}

// Slow paces the order's next evidence answers (as many as answers) to
// rate bytes per second.
func (p *provider) Slow(orderNo string, rate int64, answers int) *slowdown {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := &slowdown{rate: rate, left: answers}
	p.slow[orderNo] = s
	return s
}

func (p *provider) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/api/server/sync" && r.URL.Query().Get("get_file") != "" {
		p.mu.Lock()
		if s := p.slow[r.URL.Query().Get("order_no")]; s != nil && s.left > 0 {
			s.left--
			w = &slowWriter{ResponseWriter: w, ctx: r.Context(), s: s}
		}
		p.mu.Unlock()
	}
	p.Fake.ServeHTTP(w, r)
}

// slowWriter writes at most s.rate bytes per second and gives up once the
// client has gone away.
type slowWriter struct {
	http.ResponseWriter
	ctx context.Context
	s   *slowdown
}

// Unwrap lets http.ResponseController reach the connection, which the
// fake hijacks to cut answers short.
func (w *slowWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *slowWriter) Write(b []byte) (int, error) {
	chunk := int(w.s.rate / 50) // 20 ms of data
	written := 0
	for len(b) > 0 {
		n := min(len(b), chunk)
		m, err := w.ResponseWriter.Write(b[:n])
		written += m
		w.s.written.Add(int64(m))
		if err != nil {
			return written, err
		}
		b = b[n:]
		t := time.NewTimer(time.Duration(int64(n) * int64(time.Second) / w.s.rate))
		select {
		case <-t.C:
		case <-w.ctx.Done():
			t.Stop()
			return written, w.ctx.Err()
		}
	}
	return written, nil
}
