package worker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"time"

	"github.com/hibiken/asynq"
	"go.uber.org/zap"

	"github.com/facesync/facesync/storage"
	"github.com/facesync/facesync/tasks"
	"github.com/facesync/facesync/worker/idasc"
	"github.com/facesync/facesync/worker/orderstore"
	"github.com/facesync/facesync/worker/tracing"
)

// HandleFetchEvidence handles faceid:fetch_evidence: it calls sync with
// get_file and streams the photo and video into storage, then writes the
// manifest and updates the decision record.
func (w *Worker) HandleFetchEvidence(ctx context.Context, t *asynq.Task) error {
	start := w.now()
	p, err := tasks.ParseFetchEvidence(t.Payload())
	if err != nil {
		return w.invalidPayload(t, err)
	}
	tracing.Order(ctx, p.AppID, p.OrderNo)
	log := w.taskLog(ctx, t, p.AppID, p.OrderNo)
	outcome, err := w.fetchEvidence(ctx, t, p, log)
	outcome, err = purgedEnd(p.AppID, p.OrderNo, outcome, err)
	w.finish(log, t, start, outcome, err)
	return err
}

// wantKinds lists the files get_file asks for.
func wantKinds(g tasks.GetFile) []string {
	switch g.Or() {
	case tasks.GetFilePhoto:
		return []string{idasc.KindPhoto}
	case tasks.GetFileVideo:
		return []string{idasc.KindVideo}
	}
	return []string{idasc.KindPhoto, idasc.KindVideo}
}

// getFileFor asks the provider for only the files still missing.
func getFileFor(missing []string) string {
	if len(missing) == 1 && missing[0] == idasc.KindPhoto {
		return tasks.GetFilePhoto
	}
	if len(missing) == 1 && missing[0] == idasc.KindVideo {
		return tasks.GetFileVideo
	}
	return tasks.GetFileBoth
}

func (w *Worker) fetchEvidence(ctx context.Context, t *asynq.Task, p tasks.FetchEvidence, log *zap.Logger) (string, error) {
	// First, as for every task of an order: a purge under way has set the
	// marker before it deletes the record and the objects, and nothing is
	// read, written or fetched for the order from then on. (The decision
	// path reads it in the pacing's round trip instead: it is the hot one.)
	switch purged, err := w.store.Purged(ctx, p.AppID, p.OrderNo); {
	case err != nil:
		return "retry", retry(retryTransient, err)
	case purged:
		return "purged", orderstore.ErrPurged
	}
	rec, raw, err := w.store.Get(ctx, p.AppID, p.OrderNo)
	if errors.Is(err, orderstore.ErrNoRecord) {
		return "no_record", fmt.Errorf("order %s:%s has no decision record (expired or never written): %w", p.AppID, p.OrderNo, asynq.SkipRetry)
	}
	if err != nil {
		return "retry", retry(retryTransient, err)
	}
	if rec.Final() {
		// Finished (or never asked for): asynq delivers at least once, and
		// a finished order is not fetched again.
		writeResult(t, raw, log)
		return "duplicate", nil
	}
	// A stored manifest means the evidence is done, even if the record
	// does not say so yet (a crash between the two writes).
	m, err := w.sink.GetManifest(ctx, p.AppID, p.OrderNo)
	switch {
	case err == nil:
		return w.adoptManifest(ctx, t, p, m, log)
	case !errors.Is(err, storage.ErrNotFound):
		return w.evidenceRetryOrGiveUp(ctx, t, p, rec, retry(retryTransient, fmt.Errorf("read manifest: %w", err)), log)
	}
	if n, _ := asynq.GetRetryCount(ctx); n == 0 {
		if err := w.waitUntil(ctx, p.NotBefore); err != nil {
			return "retry", err
		}
		w.m.decisionAge.Observe(w.now().Sub(p.DecidedAt).Seconds())
	}

	st, err := w.store.State(ctx, p.AppID, p.OrderNo)
	if err != nil {
		return w.evidenceRetryOrGiveUp(ctx, t, p, rec, retry(retryTransient, err), log)
	}
	have := st.Files
	missing := missingKinds(p.GetFile, have)
	if len(missing) > 0 {
		gen, perr := w.download(ctx, p, missing, have, log)
		var re *retryError
		switch {
		case errors.Is(perr, orderstore.ErrPurged):
			return "purged", perr // nothing more is fetched or stored
		case isThrottled(perr):
			// Throttled or held back by the fleet's pacing: retried, never
			// failed for it, whatever the retry budget says.
			return "throttled", perr
		case errors.As(perr, &re):
			return w.evidenceRetryOrGiveUp(ctx, t, p, rec, perr, log) // the pacing's Redis failed
		}
		if perr != nil {
			// ClassInvalid comes first: an oversize file is met by the
			// storage upload reading it, and is final all the same.
			switch class := idasc.ClassOf(perr); {
			case class == idasc.ClassInvalid:
				return w.finishEvidence(ctx, t, p, rec, have, orderstore.EvidenceFailed, perr.Error(), log)
			case class == idasc.ClassNotReady:
				// Treated like missing files below.
			case class == idasc.ClassRejected:
				// As for decisions: three fresh tickets refused and the
				// order is given up, rather than minting a token a second.
				n, rerr := w.store.CountRejected(ctx, p.AppID, p.OrderNo, orderstore.PhaseEvidence, gen)
				if rerr != nil {
					return w.evidenceRetryOrGiveUp(ctx, t, p, rec, retry(retryTransient, rerr), log)
				}
				if n >= maxRejectedTickets {
					msg := fmt.Sprintf("the provider refused the evidence request (code %s) with %d fresh tickets", idasc.CodeRejected, n)
					return w.finishEvidence(ctx, t, p, rec, have, orderstore.EvidenceFailed, msg, log)
				}
				return w.evidenceRetryOrGiveUp(ctx, t, p, rec, retry(retryRejected, perr), log)
			case class == idasc.ClassHTTP4xx:
				return w.finishEvidence(ctx, t, p, rec, have, orderstore.EvidenceFailed, "the provider answered "+errorStatus(perr), log)
			case class == idasc.ClassRefused:
				log.Warn("the provider refused the app's account for the evidence call", zap.Error(perr))
				return w.finishEvidence(ctx, t, p, rec, have, orderstore.EvidenceFailed,
					"the provider refused the evidence request: "+providerCodeMsg(perr), log)
			case class == idasc.ClassBadRequest:
				log.Warn("the provider refused the evidence request's version or body", zap.Error(perr))
				return w.finishEvidence(ctx, t, p, rec, have, orderstore.EvidenceFailed,
					"the provider refused the evidence request: "+providerCodeMsg(perr), log)
			default:
				return w.evidenceRetryOrGiveUp(ctx, t, p, rec, retry(retryTransient, perr), log)
			}
		}
		missing = missingKinds(p.GetFile, have)
	}
	if len(missing) == 0 {
		return w.finishEvidence(ctx, t, p, rec, have, orderstore.EvidenceStored, "", log)
	}
	deadline := p.DecidedAt.Add(w.cfg.EvidenceDelay + w.cfg.EvidenceWait)
	if !w.now().Before(deadline) || lastAttempt(ctx) {
		msg := fmt.Sprintf("the provider returned no %v within %v", missing, w.cfg.EvidenceWait)
		return w.finishEvidence(ctx, t, p, rec, have, orderstore.EvidenceUnavailable, msg, log)
	}
	return "retry", retry(retryNotReady, fmt.Errorf("evidence not ready yet: %v missing", missing))
}

func missingKinds(g tasks.GetFile, have map[string]storage.File) []string {
	var out []string
	for _, k := range wantKinds(g) {
		if _, ok := have[k]; !ok {
			out = append(out, k)
		}
	}
	return out
}

// download makes one sync call with get_file for the missing kinds and
// streams each file into storage while it is read. Stored files are added
// to have and remembered in Redis at once. It returns the ticket
// generation it signed with.
func (w *Worker) download(ctx context.Context, p tasks.FetchEvidence, missing []string, have map[string]storage.File, log *zap.Logger) (int64, error) {
	tk, err := w.tickets.Get(ctx, p.AppID)
	if err != nil {
		err = fmt.Errorf("sign ticket: %w", err)
		if idasc.IsThrottled(err) {
			return 0, throttled(err, 0)
		}
		return 0, err
	}
	want := make(map[string]bool, len(missing))
	for _, k := range missing {
		want[k] = true
	}
	// noteErr is the order store's refusal inside the upload callback: a
	// Redis failover or a purge, returned as it is rather than as the
	// provider client's error, so that it is judged as what it is.
	var noteErr error
	err = w.paced(ctx, p.AppID, p.OrderNo, "sync_evidence", log, func() error {
		_, serr := w.provider.SyncEvidence(ctx, idasc.SyncRequest{AppID: p.AppID, OrderNo: p.OrderNo, Ticket: tk.Value},
			getFileFor(missing), w.cfg.MaxEvidenceBytes,
			func(kind string, r io.Reader) error {
				if !want[kind] {
					return nil // the provider sent more than asked; the extractor skips it
				}
				up := time.Now()
				f, err := w.sink.PutFile(ctx, p.AppID, p.OrderNo, kind, r)
				if err != nil {
					return fmt.Errorf("store evidence: %w", err)
				}
				w.m.uploadDuration.WithLabelValues(kind).Observe(time.Since(up).Seconds())
				w.m.evidenceBytes.WithLabelValues(kind).Add(float64(f.Size))
				if err := w.store.NoteFile(ctx, p.AppID, p.OrderNo, f); err != nil {
					noteErr = err
					return fmt.Errorf("store evidence: %w", err)
				}
				have[kind] = f
				log.Info("evidence file stored", zap.String("kind", kind), zap.String("key", f.Key), zap.Int64("size", f.Size))
				return nil
			})
		return serr
	})
	if err != nil && noteErr != nil {
		return tk.Generation, fmt.Errorf("store evidence: %w", noteErr)
	}
	if isThrottled(err) {
		return tk.Generation, err
	}
	class := idasc.ClassOf(err)
	switch class {
	case idasc.ClassNone, idasc.ClassFailed:
		// A definitive non-zero code still carries evidence: auditors need both.
		return tk.Generation, nil
	case idasc.ClassRejected:
		if rerr := w.tickets.Reject(ctx, p.AppID, tk.Generation); rerr != nil {
			log.Warn("could not report the refused ticket", zap.Int64("generation", tk.Generation), zap.Error(rerr))
		}
	}
	return tk.Generation, err
}

// evidenceRetryOrGiveUp retries, unless the retry budget is spent: then the
// evidence ends failed, keeping whatever was stored.
func (w *Worker) evidenceRetryOrGiveUp(ctx context.Context, t *asynq.Task, p tasks.FetchEvidence, rec *orderstore.Record, err error, log *zap.Logger) (string, error) {
	// An error asynq does not count as a failure (throttled, paused,
	// Redis failing over) never ends the budget: the task comes back.
	if ctx.Err() != nil || !lastAttempt(ctx) || !IsFailure(err) {
		return "retry", err
	}
	st, herr := w.store.State(ctx, p.AppID, p.OrderNo)
	if herr != nil {
		return "retry", errors.Join(err, herr)
	}
	return w.finishEvidence(ctx, t, p, rec, st.Files, orderstore.EvidenceFailed, "retry budget spent; last error: "+err.Error(), log)
}

// finishEvidence writes the manifest for the files stored (if any) and the
// record's final evidence status.
func (w *Worker) finishEvidence(ctx context.Context, t *asynq.Task, p tasks.FetchEvidence, rec *orderstore.Record, have map[string]storage.File, status, msg string, log *zap.Logger) (string, error) {
	ev := orderstore.Evidence{Status: status, Msg: msg, Files: sortedFiles(have)}
	if len(ev.Files) > 0 {
		m, err := manifestFor(rec, ev.Files, w.now())
		if err != nil {
			return "retry", retry(retryTransient, err)
		}
		key, err := w.sink.PutManifest(ctx, m)
		if errors.Is(err, storage.ErrManifestExists) {
			m, gerr := w.sink.GetManifest(ctx, p.AppID, p.OrderNo)
			if gerr != nil {
				return "retry", retry(retryTransient, gerr)
			}
			return w.adoptManifest(ctx, t, p, m, log)
		}
		if err != nil {
			return "retry", retry(retryTransient, fmt.Errorf("write manifest: %w", err))
		}
		ev.ManifestKey = key
	}
	_, stored, err := w.store.UpdateEvidence(ctx, p.AppID, p.OrderNo, func(e *orderstore.Evidence) bool {
		if e.Status == orderstore.EvidenceStored {
			return false // never step back from stored
		}
		*e = ev
		return true
	})
	if err != nil {
		return "retry", retry(retryTransient, err)
	}
	writeResult(t, stored, log)
	w.enqueueDueEvents(ctx, p.AppID, p.OrderNo, log) // the evidence event, marked due by UpdateEvidence
	log.Info("evidence finished", zap.String("evidence", status), zap.Int("files", len(ev.Files)), zap.String("reason", msg))
	return "evidence_" + status, nil
}

// adoptManifest rewrites the record's evidence from a stored manifest.
func (w *Worker) adoptManifest(ctx context.Context, t *asynq.Task, p tasks.FetchEvidence, m *storage.Manifest, log *zap.Logger) (string, error) {
	key, err := w.sink.ManifestKey(p.AppID, p.OrderNo)
	if err != nil {
		return "invalid", fmt.Errorf("%v: %w", err, asynq.SkipRetry)
	}
	have := make(map[string]storage.File, len(m.Files))
	for _, f := range m.Files {
		have[f.Kind] = f
	}
	ev := orderstore.Evidence{Status: orderstore.EvidenceStored, ManifestKey: key, Files: sortedFiles(have)}
	if missing := missingKinds(p.GetFile, have); len(missing) > 0 {
		ev.Status = orderstore.EvidenceUnavailable
		ev.Msg = fmt.Sprintf("the manifest lists no %v", missing)
	}
	_, stored, err := w.store.UpdateEvidence(ctx, p.AppID, p.OrderNo, func(e *orderstore.Evidence) bool {
		if e.Status != orderstore.EvidencePending {
			return false // already finished, with its own reason
		}
		*e = ev
		return true
	})
	if err != nil {
		return "retry", retry(retryTransient, err)
	}
	writeResult(t, stored, log)
	w.enqueueDueEvents(ctx, p.AppID, p.OrderNo, log) // the evidence event, marked due by UpdateEvidence
	return "evidence_" + ev.Status, nil
}

func sortedFiles(have map[string]storage.File) []storage.File {
	out := make([]storage.File, 0, len(have))
	for _, f := range have {
		out = append(out, f)
	}
	// photo before video, as auditors read them
	sort.Slice(out, func(i, j int) bool { return out[i].Kind < out[j].Kind })
	return out
}

// maxNotBeforeWait bounds the wait for NotBefore: the task is scheduled at
// the whole second at or before it, so the rest is under a second unless
// clocks disagree.
const maxNotBeforeWait = 2 * time.Second

// waitUntil waits for t, the payload's NotBefore: asynq ran the task at the
// whole second at or before it, and the provider's evidence is not ready
// before. A cancelled wait is a shutdown, returned for asynq to put the
// task back.
func (w *Worker) waitUntil(ctx context.Context, t time.Time) error {
	d := t.Sub(w.now())
	if t.IsZero() || d <= 0 {
		return nil
	}
	timer := time.NewTimer(min(d, maxNotBeforeWait))
	defer timer.Stop()
	select {
	case <-timer.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
