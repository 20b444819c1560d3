package perf

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/facesync/facesync/ticketcache"
	"github.com/facesync/facesync/worker/idasc"
	"github.com/facesync/facesync/worker/idasc/idasctest"
)

// Sizes of the runs: enough orders that start-up and the 10 ms poll are a
// few per cent of each run, few enough that the whole table takes a few
// minutes on two cores. `go test -short` shrinks them (see shrink) to check
// the benchmarks themselves, not to measure.
var (
	decisionOrders = 6000 // rows 1 and 4, provider at zero latency
	latencyOrders  = 8000 // row 2: 8 s at the bound
	mintOrders     = 8000 // row 5: about 10 s, three or four refreshes
	rounds         = 2    // rows 1, 3 and 4: runs of each kind, alternated, best kept
	evidenceMB     = []int64{10, 100, 200}
)

// shrink makes every run small, for `go test -short`: the table's figures
// then say nothing, and the mints row cannot see three refreshes.
func shrink() {
	decisionOrders, latencyOrders, mintOrders, rounds = 500, 500, 500, 1
	evidenceMB = []int64{5, 10, 20}
	paced, idleWindow = 20, 2*time.Second
}

// BenchmarkDecisionThroughput is row 1: one facesync worker process at
// concurrency 50 takes decisions (get_file "0") from the fake provider at
// zero latency. Its reference is the naive correct handler (naiveChild:
// one signed sync call, one SET, the task result), and asynq's no-op
// handler is the figure of asynq's own cost; each runs in a process of its
// own, on the same Redis with the same concurrency and the same
// pre-enqueued tasks, in the same run. The bars: facesync's throughput at
// least the naive handler's (stretch 1.1×), and its CPU per order (user +
// system of the whole process, start-up included) at most the naive
// handler's.
func BenchmarkDecisionThroughput(b *testing.B) {
	s := newStack(b, idasctest.Options{})
	const conc = 50
	kinds := []struct {
		name string
		run  func() runResult
	}{
		{"noop", func() runResult { return s.runNoop(b, decisionOrders, conc) }},
		{"naive", func() runResult { return s.runNaive(b, decisionOrders, conc) }},
		{"facesync", func() runResult { return s.runWorkers(b, decisionOrders, 1, conc) }},
	}
	// best keeps each kind's highest rate and, separately, its least CPU
	// per order: the two cores are shared with Redis, the fake provider and
	// whatever else runs, and the least disturbed run is the one that says
	// what the code can do.
	best := make([]runResult, len(kinds))
	for b.Loop() {
		for range rounds { // alternated, so a disturbance hits every kind alike
			for i, k := range kinds {
				r, bk := k.run(), &best[i]
				if bk.rate == 0 {
					*bk = r
					continue
				}
				bk.rate = max(bk.rate, r.rate)
				bk.workerCPU = min(bk.workerCPU, r.workerCPU)
				bk.redisCPU = min(bk.redisCPU, r.redisCPU)
				bk.selfCPU = min(bk.selfCPU, r.selfCPU)
			}
		}
	}
	noop, naive, got := best[0], best[1], best[2]
	for i, k := range kinds {
		prefix := k.name + "-"
		if k.name == "facesync" {
			prefix = ""
		}
		b.ReportMetric(best[i].rate, prefix+"orders/s")
		reportCPU(b, prefix, best[i], decisionOrders)
	}
	ratio := got.rate / naive.rate
	b.ReportMetric(ratio, "ratio-to-naive")
	b.ReportMetric(got.rate/noop.rate, "ratio-to-noop")
	stretch := "stretch 1.1× missed"
	if ratio >= 1.1 {
		stretch = "stretch 1.1× met"
	}
	addRow(row{
		name:      fmt.Sprintf("decision throughput, 1 worker process, concurrency %d, provider latency 0", conc),
		measured:  fmt.Sprintf("%.0f orders/s", got.rate),
		reference: fmt.Sprintf("%.0f orders/s (naive handler: sync call, SET, task result)", naive.rate),
		bar:       fmt.Sprintf("×%.2f (bar ≥ 1.0; %s)", ratio, stretch),
		pass:      passFail(ratio >= 1.0),
	})
	addRow(row{
		name:      "the same, against asynq's no-op handler",
		measured:  fmt.Sprintf("%.0f orders/s", got.rate),
		reference: fmt.Sprintf("%.0f tasks/s (asynq, no-op handler)", noop.rate),
		bar:       fmt.Sprintf("×%.2f (figure)", got.rate/noop.rate),
		pass:      "figure",
	})
	gotCPU, naiveCPU := perOrder(got.workerCPU, decisionOrders), perOrder(naive.workerCPU, decisionOrders)
	addRow(row{
		name: "worker CPU per order, that run (whole process, user + system)",
		measured: fmt.Sprintf("%.0f µs (Redis %.0f µs, fake provider + polling %.0f µs)",
			gotCPU, perOrder(got.redisCPU, decisionOrders), perOrder(got.selfCPU, decisionOrders)),
		reference: fmt.Sprintf("%.0f µs naive (Redis %.0f µs, fake %.0f µs); no-op %.0f µs (Redis %.0f µs)",
			naiveCPU, perOrder(naive.redisCPU, decisionOrders), perOrder(naive.selfCPU, decisionOrders),
			perOrder(noop.workerCPU, decisionOrders), perOrder(noop.redisCPU, decisionOrders)),
		bar:  fmt.Sprintf("×%.2f (bar ≤ 1.0)", gotCPU/naiveCPU),
		pass: passFail(gotCPU <= naiveCPU),
	})
}

// BenchmarkDecisionLatencyBound is row 2: with every sync answer 200 ms
// late and FACESYNC_CONCURRENCY=200, one worker process can at best finish
// concurrency / latency = 1000 orders per second; it must reach 90 % of it.
func BenchmarkDecisionLatencyBound(b *testing.B) {
	const (
		conc    = 200
		latency = 200 * time.Millisecond
	)
	s := newStack(b, idasctest.Options{DefaultScenario: idasctest.Scenario{Latency: latency}})
	bound := conc / latency.Seconds()
	var run runResult
	for b.Loop() {
		run = s.runWorkers(b, latencyOrders, 1, conc)
	}
	got := run.rate
	reportCPU(b, "", run, latencyOrders)
	ratio := got / bound
	b.ReportMetric(got, "decisions/s")
	b.ReportMetric(bound, "bound-decisions/s")
	b.ReportMetric(ratio, "ratio")
	addRow(row{
		name:      fmt.Sprintf("decision throughput, 1 worker process, concurrency %d, provider latency %v", conc, latency),
		measured:  fmt.Sprintf("%.0f orders/s", got),
		reference: fmt.Sprintf("%.0f orders/s (concurrency / latency)", bound),
		bar:       fmt.Sprintf("%.0f %% (bar ≥ 90 %%)", 100*ratio),
		pass:      passFail(ratio >= 0.9),
	})
}

// BenchmarkEvidencePipeline is row 3: a video of 10, 100 and 200 MB goes
// from the fake provider over HTTP through idasc.Client.SyncEvidence into
// storage.S3.PutFile on versitygw, each in a fresh process whose peak RSS
// (VmHWM) is read at the end. The reference is the upload ceiling for the
// same decoded size, measured in the same run, also in a fresh process:
// that many bytes from memory through the same PutFile (transfer manager,
// SHA-256 and CRC32, versitygw) with no provider answer to read and no
// base64 to decode. Both share the two cores with versitygw; the pipeline
// shares them with the fake provider too. Each is run `rounds` times,
// alternated, and its best kept. Peak RSS must be flat and at most 64 MiB
// for 200 MB.
func BenchmarkEvidencePipeline(b *testing.B) {
	s := newStack(b, idasctest.Options{EvidenceDelay: -1})
	sizes := evidenceMB
	type result struct {
		mbps, ceiling     float64
		peakKiB           int64
		childCPU, selfCPU time.Duration
		upCPU             time.Duration
	}
	res := make([]result, len(sizes))
	iter := 0
	for b.Loop() {
		// Pipeline and ceiling alternate, best MB/s of each kept (as in
		// row 1); peak RSS is the largest seen, for the memory bar.
		for range rounds {
			iter++
			for i, mb := range sizes {
				size := mb * 1000 * 1000
				order := fmt.Sprintf("o%dmb-%d", mb, iter)
				s.fake.SetScenario(appID, order, idasctest.Scenario{VideoSize: size, NoPhoto: true})
				var got, up evidenceResult
				var self time.Duration
				pipeline := func() {
					self0 := selfCPU()
					got = s.runEvidence(b, order, 0)
					self = selfCPU() - self0
				}
				ceiling := func() { up = s.runEvidence(b, order+"-up", size) }
				if iter%2 == 1 { // each goes first in every other round
					pipeline()
					ceiling()
				} else {
					ceiling()
					pipeline()
				}
				_, wantSize, wantSum := s.fake.Evidence(appID, order, idasc.KindVideo)
				if got.File.Size != wantSize || got.File.SHA256 != wantSum {
					b.Fatalf("%d MB video stored as %d bytes, sha256 %s; want %d bytes, sha256 %s", mb, got.File.Size, got.File.SHA256, wantSize, wantSum)
				}
				if up.File.Size != size {
					b.Fatalf("upload ceiling of %d MB stored %d bytes", mb, up.File.Size)
				}
				r := &res[i]
				if mbps := float64(size) / 1e6 / got.Seconds; mbps > r.mbps {
					r.mbps, r.childCPU, r.selfCPU = mbps, got.CPU, self
				}
				if ceiling := float64(size) / 1e6 / up.Seconds; ceiling > r.ceiling {
					r.ceiling, r.upCPU = ceiling, up.CPU
				}
				r.peakKiB = max(r.peakKiB, got.PeakKiB)
			}
		}
	}
	for i, mb := range sizes {
		r := res[i]
		peak := float64(r.peakKiB) / 1024
		b.ReportMetric(r.mbps, fmt.Sprintf("%dMB-MB/s", mb))
		b.ReportMetric(r.ceiling, fmt.Sprintf("%dMB-upload-ceiling-MB/s", mb))
		b.ReportMetric(peak, fmt.Sprintf("%dMB-peak-RSS-MiB", mb))
		// Where the two cores go: the pipeline's process, and the fake
		// provider generating and base64-encoding the video (versitygw,
		// the third party, is not counted); the ceiling's process, which
		// also made the bytes before its clock started.
		b.ReportMetric(float64(r.childCPU.Milliseconds())/float64(mb), fmt.Sprintf("%dMB-pipeline-CPU-ms/MB", mb))
		b.ReportMetric(float64(r.selfCPU.Milliseconds())/float64(mb), fmt.Sprintf("%dMB-fake-CPU-ms/MB", mb))
		b.ReportMetric(float64(r.upCPU.Milliseconds())/float64(mb), fmt.Sprintf("%dMB-upload-CPU-ms/MB", mb))
		addRow(row{
			name:      fmt.Sprintf("evidence pipeline, %d MB video (HTTP → SyncEvidence → PutFile → versitygw)", mb),
			measured:  fmt.Sprintf("%.0f MB/s", r.mbps),
			reference: fmt.Sprintf("%.0f MB/s (upload ceiling: the same size from memory through PutFile)", r.ceiling),
			bar:       fmt.Sprintf("%.2f (figure)", r.mbps/r.ceiling),
			pass:      "figure",
		})
		// Flat: memory stops growing once the upload's buffer pool is full
		// ((concurrency + 2) parts of 5 MiB, reached above ~20 MB), so a
		// video twice as large may cost at most 8 MiB more.
		bar, pass, ref := "≤ 64 MiB", r.peakKiB <= 64<<10, "64 MiB"
		if i > 0 && sizes[i] == 2*sizes[i-1] {
			prev := res[i-1].peakKiB
			bar = fmt.Sprintf("≤ 64 MiB and ≤ %d MB's + 8 MiB", sizes[i-1])
			pass = pass && r.peakKiB-prev <= 8<<10
			ref = fmt.Sprintf("%.1f MiB (%d MB video)", float64(prev)/1024, sizes[i-1])
		}
		addRow(row{
			name:      fmt.Sprintf("peak RSS of that pipeline, %d MB video (fresh process)", mb),
			measured:  fmt.Sprintf("%.1f MiB", peak),
			reference: ref,
			bar:       bar,
			pass:      passFail(pass),
		})
	}
}

// BenchmarkScaling is row 4: the same decision-only orders taken by 1, 2
// and 4 worker processes at concurrency 50 each on one Redis. A figure, no
// bar: on two cores the processes, Redis and the fake provider share the
// same CPUs.
func BenchmarkScaling(b *testing.B) {
	s := newStack(b, idasctest.Options{})
	counts := []int{1, 2, 4}
	got := make([]float64, len(counts))
	for b.Loop() {
		for range rounds { // best of each, as in row 1
			for i, n := range counts {
				got[i] = max(got[i], s.runWorkers(b, decisionOrders, n, 50).rate)
			}
		}
	}
	for i, n := range counts {
		b.ReportMetric(got[i], fmt.Sprintf("%dproc-decisions/s", n))
		addRow(row{
			name:      fmt.Sprintf("horizontal scaling, %d worker process(es), concurrency 50 each", n),
			measured:  fmt.Sprintf("%.0f orders/s", got[i]),
			reference: fmt.Sprintf("%.0f orders/s (1 process)", got[0]),
			bar:       fmt.Sprintf("×%.2f (figure)", got[i]/got[0]),
			pass:      "figure",
		})
	}
}

// BenchmarkTicketMints is row 5: 8 worker processes take orders while the
// fake provider hands out SIGN tickets that live 603 s, so that each pair
// is due 3 s after it was fetched (a ticket must keep 600 s; the smallest
// FACESYNC_TICKET_MAX_AGE, 1m, would make the run minutes long). Each
// refresh stores a new ticket generation; every refresh must mint exactly
// one access token and one ticket at the provider.
func BenchmarkTicketMints(b *testing.B) {
	const (
		procs = 8
		conc  = 10
	)
	s := newStack(b, idasctest.Options{
		TicketTTL:       603 * time.Second,
		DefaultScenario: idasctest.Scenario{Latency: 100 * time.Millisecond},
	})
	var tokens, tickets, refreshes int
	var dead int
	for b.Loop() {
		tok0, tick0, dead0 := s.fake.TokenMints(appID), s.fake.TicketMints(appID), s.fake.RejectedWithDeadTicket(appID)
		s.runWorkers(b, mintOrders, procs, conc)
		e, ok, err := ticketcache.ReadEntry(context.Background(), s.rdb, appID)
		if err != nil || !ok {
			b.Fatalf("ReadEntry(%s) = ok %v, error %v; want the fleet's entry", appID, ok, err)
		}
		tokens, tickets, refreshes = s.fake.TokenMints(appID)-tok0, s.fake.TicketMints(appID)-tick0, int(e.Generation)
		dead = s.fake.RejectedWithDeadTicket(appID) - dead0
	}
	b.ReportMetric(float64(refreshes), "refreshes")
	b.ReportMetric(float64(tokens)/float64(refreshes), "token-mints/refresh")
	b.ReportMetric(float64(tickets)/float64(refreshes), "ticket-mints/refresh")
	b.ReportMetric(float64(dead), "dead-ticket-rejections")
	enough := refreshes >= 3
	for _, m := range []struct {
		what string
		n    int
	}{{"access-token", tokens}, {"SIGN-ticket", tickets}} {
		addRow(row{
			name:      fmt.Sprintf("%s mints per refresh, %d worker processes", m.what, procs),
			measured:  fmt.Sprintf("%.2f (%d mints, %d refreshes)", float64(m.n)/float64(refreshes), m.n, refreshes),
			reference: "1",
			bar:       "exactly 1, over ≥ 3 refreshes",
			pass:      passFail(m.n == refreshes && enough && dead == 0),
		})
	}
}
