package webhook

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Outcomes of a delivery, the outcome label of
// facesync_webhook_deliveries_total.
const (
	OutcomeDelivered = "delivered" // a 2xx answer
	OutcomeFailed    = "failed"    // another answer or none: it is retried
	OutcomeArchived  = "archived"  // the wait passed: it is given up (facesync requeue --webhooks runs it again)
	OutcomeDuplicate = "duplicate" // the event was delivered already
	OutcomeDropped   = "dropped"   // nothing to deliver: no webhook for the app, or the event is gone
)

// Metrics are the webhook series.
type Metrics struct {
	deliveries *prometheus.CounterVec
	attempt    *prometheus.HistogramVec
	latency    prometheus.Histogram
}

// NewMetrics returns the webhook series, registered with reg unless it is
// nil.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "facesync_webhook_deliveries_total",
			Help: "Webhook delivery attempts, by event and outcome (delivered, failed, archived, duplicate, dropped).",
		}, []string{"event", "outcome"}),
		attempt: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "facesync_webhook_request_duration_seconds",
			Help:    "Time one webhook POST took, to the receiver's answer or the timeout, by outcome (delivered or failed).",
			Buckets: []float64{.01, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"outcome"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "facesync_webhook_delivery_latency_seconds",
			Help:    "Time from an event becoming due to its delivery, retries included.",
			Buckets: []float64{.05, .1, .5, 1, 5, 30, 60, 300, 900, 3600, 21600, 86400},
		}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.deliveries, m.attempt, m.latency} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}

// Count counts one delivery attempt of event with outcome.
func (m *Metrics) Count(event, outcome string) { m.deliveries.WithLabelValues(event, outcome).Inc() }

// Delivered observes the time from an event becoming due to its delivery.
func (m *Metrics) Delivered(d time.Duration) { m.latency.Observe(d.Seconds()) }

// Sender makes delivery attempts.
type Sender struct {
	client *http.Client
	m      *Metrics
	now    func() time.Time
}

// NewSender returns a Sender whose attempts time out after timeout (zero:
// DefaultTimeout) and never follow a redirect. m may be nil; now nil means
// time.Now.
func NewSender(timeout time.Duration, m *Metrics, now func() time.Time) *Sender {
	if timeout == 0 {
		timeout = DefaultTimeout
	}
	if m == nil {
		m, _ = NewMetrics(nil)
	}
	if now == nil {
		now = time.Now
	}
	return &Sender{
		client: &http.Client{
			Timeout: timeout,
			// A redirect is an answer like any other that is not 2xx: the
			// receiver's URL is configured, not discovered.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		m:   m,
		now: now,
	}
}

// Attempt is what one delivery attempt sent and got.
type Attempt struct {
	Status    int           // HTTP status; 0 when there was no answer
	Signed    time.Time     // the signature's t
	Duration  time.Duration // until the answer or the error
	Delivered bool          // a 2xx answer
}

// maxDrain bounds how much of an answer's body is read (and thrown away)
// so the connection can be reused.
const maxDrain = 64 << 10

// Send POSTs body, delivery id of event, to e, signed now. It returns an
// error unless the answer is a 2xx; the error names the status or the
// failure, never the secret, the signature or the URL's query.
func (s *Sender) Send(ctx context.Context, e Endpoint, id, event string, body []byte) (Attempt, error) {
	a := Attempt{Signed: s.now()}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.URL, bytes.NewReader(body))
	if err != nil {
		return a, fmt.Errorf("webhook request: %v", redact(err))
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "facesync-webhook/1")
	req.Header.Set(HeaderEvent, event)
	req.Header.Set(HeaderDelivery, id)
	req.Header.Set(HeaderSignature, Sign(e.Secret, a.Signed, body))
	begin := time.Now()
	resp, err := s.client.Do(req)
	a.Duration = time.Since(begin)
	if err != nil {
		s.m.attempt.WithLabelValues(OutcomeFailed).Observe(a.Duration.Seconds())
		return a, fmt.Errorf("POST to %s: %v", host(e.URL), redact(err))
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxDrain))
	_ = resp.Body.Close()
	a.Status = resp.StatusCode
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		a.Delivered = true
		s.m.attempt.WithLabelValues(OutcomeDelivered).Observe(a.Duration.Seconds())
		return a, nil
	}
	s.m.attempt.WithLabelValues(OutcomeFailed).Observe(a.Duration.Seconds())
	if resp.StatusCode >= 300 && resp.StatusCode < 400 {
		return a, fmt.Errorf("POST to %s: HTTP %d (redirects are not followed)", host(e.URL), resp.StatusCode)
	}
	return a, fmt.Errorf("POST to %s: HTTP %d", host(e.URL), resp.StatusCode)
}

// host names a URL by its host alone: a partner's path or query may carry
// a token of its own.
func host(raw string) string {
	if u, err := url.Parse(raw); err == nil && u.Host != "" {
		return u.Host
	}
	return "the webhook URL"
}

// redact drops the URL from a net/http error, keeping what went wrong.
func redact(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		if ue.Timeout() {
			return fmt.Errorf("no answer within the timeout: %w", context.DeadlineExceeded)
		}
		return ue.Err
	}
	return err
}

// RetryDelay is the delay before attempt n+1 (n counting the failed
// attempts so far, from 0) of a delivery whose wait started at since:
// capped exponential backoff with jitter, between half and all of
// min(RetryCap, RetryBase·2^n), and never past the end of the wait, so the
// last attempt falls on it. c must have its defaults (WithDefaults).
func (c Config) RetryDelay(n int, since, now time.Time) time.Duration {
	d := c.RetryCap
	if n < 40 && c.RetryBase<<n < c.RetryCap && c.RetryBase<<n > 0 {
		d = c.RetryBase << n
	}
	half := d / 2
	d = half + rand.N(half+1)
	if left := since.Add(c.Wait).Sub(now); !since.IsZero() && left > 0 && left < d {
		d = left
	}
	return max(d, time.Second/2)
}
