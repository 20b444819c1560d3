package worker

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the worker's Prometheus series.
type metrics struct {
	tasks           *prometheus.CounterVec
	taskDuration    *prometheus.HistogramVec
	providerLatency *prometheus.HistogramVec
	providerCodes   *prometheus.CounterVec
	evidenceBytes   *prometheus.CounterVec
	uploadDuration  *prometheus.HistogramVec
	decisionAge     prometheus.Histogram
	taskErrors      *prometheus.CounterVec
	revivals        *prometheus.CounterVec
	pauseSeconds    *prometheus.CounterVec
	rateDelayed     *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		tasks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "facesync_tasks_total", Help: "Tasks handled, by type and outcome.",
		}, []string{"type", "outcome"}),
		taskDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "facesync_task_duration_seconds", Help: "Time one attempt of a task took.",
			Buckets: []float64{.01, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300},
		}, []string{"type"}),
		providerLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "facesync_provider_request_duration_seconds", Help: "Provider sync call latency, by call.",
			Buckets: prometheus.DefBuckets,
		}, []string{"call"}),
		providerCodes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "facesync_provider_answers_total", Help: "Provider sync answers, by call and class (passed, failed, not_ready, rejected, throttled, refused, bad_request, transient, http_4xx, invalid).",
		}, []string{"call", "class"}),
		evidenceBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "facesync_evidence_bytes_total", Help: "Decoded evidence bytes stored, by kind.",
		}, []string{"kind"}),
		uploadDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "facesync_evidence_upload_duration_seconds", Help: "Time to stream one evidence file into storage.",
			Buckets: []float64{.05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120},
		}, []string{"kind"}),
		decisionAge: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "facesync_decision_age_at_evidence_seconds", Help: "Age of the decision when its evidence attempt starts.",
			Buckets: []float64{1, 2, 5, 10, 30, 60, 300, 900, 3600, 21600, 86400},
		}),
		taskErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "facesync_task_errors_total", Help: "Failed task attempts reported by asynq, by type.",
		}, []string{"type"}),
		revivals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "facesync_revivals_total", Help: "Archived tasks the reconciler ran again (revived), ended with the order's terminal state (terminal) or failed on (error), by type.",
		}, []string{"type", "outcome"}),
		pauseSeconds: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "facesync_provider_pause_seconds_total", Help: "Seconds this pod's tasks waited on the app's fleet-wide pause (or on its probe's answer).",
		}, []string{"app"}),
		rateDelayed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "facesync_provider_rate_delayed_total", Help: "Provider calls of this pod delayed by the app's fleet-wide rate cap (FACESYNC_PROVIDER_RATE).",
		}, []string{"app"}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.tasks, m.taskDuration, m.providerLatency, m.providerCodes,
		m.evidenceBytes, m.uploadDuration, m.decisionAge, m.taskErrors, m.revivals, m.pauseSeconds, m.rateDelayed} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
