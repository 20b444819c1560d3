package faults

import (
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/facesync/facesync/worker/idasc/idasctest"
	"github.com/facesync/facesync/worker/orderstore"
)

// waitUploading waits until at least n bytes of the slowed evidence answer
// are out and the multipart upload of key has begun: the worker is then in
// the middle of streaming the file into S3.
func (s *stack) waitUploading(slow *slowdown, n int64, key string) {
	s.t.Helper()
	eventually(s.t, time.Minute, "upload of "+key+" under way", func() bool {
		if slow.written.Load() < n {
			return false
		}
		keys, err := s.multipartUploads()
		return err == nil && slices.Contains(keys, key)
	})
}

// mustBePending fails the test unless the order's evidence is still
// pending: the fault must have landed before the upload finished.
func (s *stack) mustBePending(orderNo string) {
	s.t.Helper()
	r, err := s.record(s.t.Context(), orderNo)
	if err != nil || r == nil || r.Evidence.Status != orderstore.EvidencePending {
		s.t.Fatalf("record of %s = %+v (%v), want a decision with evidence pending", orderNo, r, err)
	}
}

// TestKillMidUpload kills a worker with SIGKILL while it streams a 100 MiB
// video into S3. A worker started in its place gets the orphaned evidence
// task back once asynq's lease on it has expired (a minute or two) and
// stores the video whole.
func TestKillMidUpload(t *testing.T) {
	t.Parallel()
	s := newStack(t, "TIDAKILL")
	big := order{orderNo: "kill-big", status: orderstore.StatusPassed, evidence: orderstore.EvidenceStored}
	s.prov.SetScenario(s.app, big.orderNo, idasctest.Scenario{VideoSize: 100 << 20})
	// About 8 s for the video's 133 MiB of base64: time to land the kill.
	slow := s.prov.Slow(big.orderNo, 16<<20, 1)
	before, after := passing("kill-a", 5), passing("kill-b", 5)

	w1 := s.startWorker()
	s.enqueue(big)
	for _, o := range before {
		s.enqueue(o)
	}
	s.waitUploading(slow, 40<<20, "evidence/"+s.app+"/"+big.orderNo+"/video.mp4")
	w1.Kill()
	s.mustBePending(big.orderNo)

	start := time.Now()
	s.startWorker()
	for _, o := range after {
		s.enqueue(o)
	}
	all := append(append([]order{big}, before...), after...)
	s.check(all, 4*time.Minute)
	t.Logf("the orphaned upload was finished %v after the kill", time.Since(start).Round(time.Second))
	if n := s.getFileRequests()[big.orderNo]; n != 2 {
		t.Errorf("evidence requests for %s = %d, want 2 (the killed one and the one that finished)", big.orderNo, n)
	}
	s.verify(big.orderNo)
}

// TestSIGTERMMidUpload stops a worker with SIGTERM while an upload takes
// longer than its shutdown timeout. The worker cancels the upload, leaves
// no part of it in S3 and exits within the timeout; the task goes back to
// its queue and the next worker completes it.
func TestSIGTERMMidUpload(t *testing.T) {
	t.Parallel()
	const shutdownTimeout = 3 * time.Second
	s := newStack(t, "TIDATERM")
	big := order{orderNo: "term-big", status: orderstore.StatusPassed, evidence: orderstore.EvidenceStored}
	s.prov.SetScenario(s.app, big.orderNo, idasctest.Scenario{VideoSize: 40 << 20})
	// About 13 s for the video's 53 MiB of base64: longer than the timeout.
	slow := s.prov.Slow(big.orderNo, 4<<20, 1)
	videoKey := "evidence/" + s.app + "/" + big.orderNo + "/video.mp4"

	w1 := s.startWorker("FACESYNC_SHUTDOWN_TIMEOUT=" + shutdownTimeout.String())
	s.enqueue(big)
	s.waitUploading(slow, 8<<20, videoKey)
	start := time.Now()
	if err := w1.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// The bound is the timeout plus the 5 s a deployment gives on top of
	// it (Kubernetes' default grace period is 30 s, the timeout's default
	// 25 s) for the cancelled handler to return and the process to exit.
	if grace := shutdownTimeout + 5*time.Second; !w1.Wait(grace) {
		t.Fatalf("worker still runs %v after SIGTERM with FACESYNC_SHUTDOWN_TIMEOUT=%v", grace, shutdownTimeout)
	}
	t.Logf("worker exited %v after SIGTERM (shutdown timeout %v)", time.Since(start).Round(10*time.Millisecond), shutdownTimeout)
	if w1.Err() != nil {
		t.Errorf("worker exit after SIGTERM: %v, want status 0", w1.Err())
	}
	if log := w1.Output(); !strings.Contains(log, "shutdown timeout: cancelling in-flight tasks") {
		t.Errorf("worker log does not say it cancelled the in-flight upload")
	}
	s.mustBePending(big.orderNo)
	if keys, err := s.multipartUploads(); err != nil || len(keys) != 0 {
		t.Errorf("multipart uploads left after the cancelled upload: %v (%v), want none", keys, err)
	}

	s.startWorker()
	s.check([]order{big}, 2*time.Minute)
	if n := s.getFileRequests()[big.orderNo]; n != 2 {
		t.Errorf("evidence requests for %s = %d, want 2 (the cancelled one and the one that finished)", big.orderNo, n)
	}
	s.verify(big.orderNo)
}
