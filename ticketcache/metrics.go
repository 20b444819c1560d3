package ticketcache

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Refresh reasons, the values of the reason label.
const (
	ReasonAge      = "age"      // the pair reached MaxAge
	ReasonExpiry   = "expiry"   // the ticket or token has less than MinRemaining left, or the token is newer than the ticket
	ReasonRejected = "rejected" // the provider refused the current generation
	ReasonEmpty    = "empty"    // there is no ticket at all
)

type metrics struct {
	refreshes *prometheus.CounterVec
	failures  *prometheus.CounterVec
	duration  *prometheus.HistogramVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		refreshes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "facesync_ticket_refreshes_total",
			Help: "Refreshes of an app's access token and SIGN ticket started by this process, by reason (age, expiry, rejected, empty).",
		}, []string{"app", "reason"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "facesync_ticket_refresh_failures_total",
			Help: "Refreshes started by this process that stored no new ticket.",
		}, []string{"app"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "facesync_ticket_refresh_duration_seconds",
			Help:    "Time a refresh held the lock: provider calls and Redis writes.",
			Buckets: prometheus.ExponentialBuckets(0.01, 2, 12),
		}, []string{"app"}),
	}
	if reg == nil {
		return m, nil
	}
	var err error
	if m.refreshes, err = register(reg, m.refreshes); err != nil {
		return nil, err
	}
	if m.failures, err = register(reg, m.failures); err != nil {
		return nil, err
	}
	if m.duration, err = register(reg, m.duration); err != nil {
		return nil, err
	}
	return m, nil
}

// register registers c, or returns the collector already registered under
// its name, so that several caches may share one registry.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	err := reg.Register(c)
	if err == nil {
		return c, nil
	}
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing, nil
		}
	}
	return c, fmt.Errorf("ticketcache: register metrics: %w", err)
}
