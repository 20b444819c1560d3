package worker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/facesync/facesync/worker/idasc"
	"github.com/facesync/facesync/worker/orderstore"
	"github.com/facesync/facesync/worker/pacing"
)

// maxPauseWait bounds how long an attempt that is not the task's last
// waits on the fleet's pacing inside its handler. A longer pause gives the
// task back for a retry at the pause's end: a throttled app's tasks must
// not hold every slot of a pod from the orders of other apps.
const maxPauseWait = 2 * time.Second

// paced sends one provider call for the order (call names it in metrics)
// through the fleet's pacing: Acquire before,
// Done after with the answer. It returns send's error as it is, except
// that a throttled answer, or a wait on the pacing that could not be
// waited out, comes back as a retryThrottled error (no failure, never
// retries_exhausted), a Redis failure of the pacing as retryTransient, and
// an order that was purged as orderstore.ErrPurged, with nothing sent.
//
// asynq archives a task whose last attempt returns any error, so the last
// attempt waits out pauses and throttled answers within the task's own
// time instead of returning.
func (w *Worker) paced(ctx context.Context, appID, orderNo, call string, log *zap.Logger, send func() error) error {
	last := lastAttempt(ctx)
	for {
		pm, err := w.acquire(ctx, appID, orderNo, last)
		if err != nil {
			return err
		}
		begin := time.Now()
		err = send()
		w.m.providerLatency.WithLabelValues(call).Observe(time.Since(begin).Seconds())
		w.m.providerCodes.WithLabelValues(call, answerLabel(idasc.ClassOf(err))).Inc()
		ch := w.done(ctx, pm, appID, err, log)
		if !idasc.IsThrottled(err) {
			return err
		}
		if !last || ctx.Err() != nil {
			return throttled(err, ch.Pause)
		}
		if w.pacer == nil {
			// No fleet-wide pause to wait on: wait as a retry would.
			if serr := sleep(ctx, RetryDelay(0, throttled(err, 0), nil)); serr != nil {
				return throttled(err, 0)
			}
		}
	}
}

// acquire asks the fleet's pacing for leave to send one call for the
// order, waiting at most maxPauseWait unless this is the task's last
// attempt, and refuses it with orderstore.ErrPurged while the order's
// purge marker exists: nothing is fetched for a purged order. The marker
// is read in the pacing's own round trip; a nil pacer (Deps.Pacer) reads
// it alone and gives leave at once.
func (w *Worker) acquire(ctx context.Context, appID, orderNo string, last bool) (pacing.Permit, error) {
	if w.pacer == nil {
		purged, err := w.store.Purged(ctx, appID, orderNo)
		switch {
		case err != nil:
			return pacing.Permit{}, retry(retryTransient, err)
		case purged:
			return pacing.Permit{}, orderstore.ErrPurged
		}
		return pacing.Permit{}, nil
	}
	o := pacing.AcquireOptions{Veto: orderstore.PurgedKey(appID, orderNo)}
	if !last {
		o.MaxWait = maxPauseWait
	}
	pm, err := w.pacer.AcquireWith(ctx, appID, o)
	var we *pacing.WaitError
	switch {
	case errors.Is(err, pacing.ErrVetoed):
		return pacing.Permit{}, orderstore.ErrPurged
	case errors.As(err, &we):
		w.m.pauseSeconds.WithLabelValues(appID).Add(we.Waited.Seconds())
		if errors.Is(err, pacing.ErrRateLimited) {
			w.m.rateDelayed.WithLabelValues(appID).Inc()
		}
		return pacing.Permit{}, throttled(fmt.Errorf("provider call not sent: %w", err), we.Wait)
	case err != nil:
		return pacing.Permit{}, retry(retryTransient, err)
	}
	if d := pm.Waited(); d > 0 {
		w.m.pauseSeconds.WithLabelValues(appID).Add(d.Seconds())
	}
	if pm.RateDelayed() {
		w.m.rateDelayed.WithLabelValues(appID).Inc()
	}
	return pm, nil
}

// done reports the answer to a call sent with pm, and logs what it changed
// in the app's fleet-wide pause.
func (w *Worker) done(ctx context.Context, pm pacing.Permit, appID string, err error, log *zap.Logger) pacing.Change {
	if w.pacer == nil {
		return pacing.Change{}
	}
	a := pacing.Answered
	switch {
	case idasc.IsThrottled(err):
		a = pacing.Throttled
	case !idasc.HasAnswer(err):
		a = pacing.NoAnswer // a probe without an answer frees its slot for another
	}
	ch, derr := pm.Done(ctx, a)
	if derr != nil {
		// The pause runs on regardless; a lost probe answer frees its slot
		// after the probe timeout.
		log.Warn("could not report the provider's answer to the fleet's pacing", zap.Error(derr))
		return ch
	}
	switch ch.Event {
	case pacing.PauseStarted, pacing.PauseDoubled:
		log.Warn("the provider throttles the app: its calls pause fleet-wide",
			zap.String("pause_event", string(ch.Event)), zap.Duration("pause", ch.Pause))
	case pacing.PauseEnded:
		log.Info("the provider answers again: the app's fleet-wide pause ended")
	}
	return ch
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
