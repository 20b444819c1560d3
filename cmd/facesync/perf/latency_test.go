package perf

import (
	"context"
	"fmt"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/facesync/facesync/tasks"
	"github.com/facesync/facesync/worker/idasc/idasctest"
	"github.com/facesync/facesync/worker/orderstore"
)

// Sizes of the latency rows (shrink makes paced and idleWindow small).
const (
	latencyRate    = 10                   // orders enqueued per second, one by one
	recordPoll     = 2 * time.Millisecond // how often the paced run looks for new records
	evidenceDelay  = time.Second          // FACESYNC_EVIDENCE_DELAY's default, which the run keeps
	idleSettle     = 2 * time.Second      // an idle worker's start-up, before its Redis commands are counted
	evidenceSettle = 30 * time.Second     // bound on the wait for the last evidence call
)

var (
	paced      = 200              // orders of the paced run: 20 s
	idleWindow = 10 * time.Second // how long an idle worker's commands are counted
)

// BenchmarkDecisionLatency is the latency row: one facesync worker process
// (concurrency 50, FACESYNC_POLL_INTERVAL and FACESYNC_EVIDENCE_DELAY at
// their defaults) is started and warmed up with one order; then orders
// (get_file "1", photo and video) are enqueued one by one at 10 a second,
// as a partner's backend would, with the fake provider answering at once.
// For each, the latency is from just before its enqueue call to the first
// time its decision record exists, looked for every 2 ms (a pipeline of
// EXISTS for the orders still waiting; the time is taken after the answer,
// so it never under-reports). Bars: p50 ≤ 50 ms, p95 ≤ 120 ms.
//
// The evidence delay row comes from the same run, from the fake provider's
// request log (its receive times): for each order, from its decision sync
// call (no get_file) to its first evidence sync call (get_file set). Bar:
// every one within 1.0-1.25 s, none below 1.0 s.
func BenchmarkDecisionLatency(b *testing.B) {
	s := newStack(b, idasctest.Options{MaxRecords: 100000})
	var lat, delays []time.Duration
	var cpu time.Duration
	for b.Loop() {
		b.StopTimer()
		s.reset(b)
		p := s.startWorker(b, 50)
		client := asynq.NewClient(asynq.RedisClientOpt{Addr: s.redis.Addr})
		// The first order waits for the worker's start-up and its first
		// token and ticket; it is not measured.
		warm := []string{s.enqueueOne(b, client, "warm", tasks.GetFileNone)}
		waitFor(b, []*proc{p}, 1, s.recordCounter(warm))
		b.StartTimer()
		lat = s.pacedRun(b, client, p)
		b.StopTimer()
		delays = s.evidenceDelays(b, p)
		_ = client.Close()
		stop(b, p)
		cpu = p.Cmd.ProcessState.UserTime() + p.Cmd.ProcessState.SystemTime()
		b.StartTimer()
	}
	slices.Sort(lat)
	p50, p95, worst := quantile(lat, 0.50), quantile(lat, 0.95), lat[len(lat)-1]
	b.ReportMetric(ms(p50), "p50-ms")
	b.ReportMetric(ms(p95), "p95-ms")
	b.ReportMetric(ms(worst), "max-ms")
	b.ReportMetric(perOrder(cpu, paced), "worker-CPU-µs/op")
	addRow(row{
		name:      fmt.Sprintf("decision latency, enqueue → record, %d orders/s one by one, provider answering at once", latencyRate),
		measured:  fmt.Sprintf("p50 %.0f ms, p95 %.0f ms (max %.0f ms)", ms(p50), ms(p95), ms(worst)),
		reference: fmt.Sprintf("%d orders, record looked for every %v", paced, recordPoll),
		bar:       "p50 ≤ 50 ms, p95 ≤ 120 ms",
		pass:      passFail(p50 <= 50*time.Millisecond && p95 <= 120*time.Millisecond),
	})
	slices.Sort(delays)
	dmin, dmed, dmax := delays[0], quantile(delays, 0.5), delays[len(delays)-1]
	b.ReportMetric(dmin.Seconds(), "evidence-delay-min-s")
	b.ReportMetric(dmed.Seconds(), "evidence-delay-median-s")
	b.ReportMetric(dmax.Seconds(), "evidence-delay-max-s")
	addRow(row{
		name:      "evidence delay, decision call → first evidence call (fake provider's receive times), that run",
		measured:  fmt.Sprintf("min %.3f s, median %.3f s, max %.3f s", dmin.Seconds(), dmed.Seconds(), dmax.Seconds()),
		reference: fmt.Sprintf("FACESYNC_EVIDENCE_DELAY %v, %d orders", evidenceDelay, len(delays)),
		bar:       "1.0-1.25 s, never below 1.0 s",
		pass:      passFail(dmin >= evidenceDelay && dmax <= evidenceDelay+evidenceDelay/4),
	})
}

// enqueueOne enqueues one order as a partner would and returns its record
// key.
func (s *stack) enqueueOne(tb testing.TB, client *asynq.Client, order string, g tasks.GetFile) string {
	tb.Helper()
	if _, err := tasks.Enqueue(context.Background(), client, tasks.FetchResult{AppID: appID, OrderNo: order, GetFile: g}); err != nil {
		tb.Fatalf("enqueue %s: %v", order, err)
	}
	return orderstore.RecordKey(appID, order)
}

// pacedRun enqueues the paced orders at latencyRate while it looks for
// their records, and returns each order's enqueue → record latency.
func (s *stack) pacedRun(tb testing.TB, client *asynq.Client, p *proc) []time.Duration {
	tb.Helper()
	type sent struct {
		i  int
		at time.Time
	}
	sents := make(chan sent, paced)
	errs := make(chan error, 1)
	start := time.Now()
	go func() {
		defer close(sents)
		for i := range paced {
			time.Sleep(time.Until(start.Add(time.Duration(i) * time.Second / latencyRate)))
			at := time.Now()
			order := fmt.Sprintf("p%07d", i)
			if _, err := tasks.Enqueue(context.Background(), client, tasks.FetchResult{AppID: appID, OrderNo: order, GetFile: tasks.GetFileBoth}); err != nil {
				errs <- fmt.Errorf("enqueue %s: %w", order, err)
				return
			}
			sents <- sent{i, at}
		}
	}()

	ctx := context.Background()
	lat := make([]time.Duration, 0, paced)
	waiting := map[int]time.Time{}
	deadline := start.Add(time.Duration(paced)*time.Second/latencyRate + maxWait)
	tick := time.NewTicker(recordPoll)
	defer tick.Stop()
	for more := true; more || len(waiting) > 0; {
		select {
		case err := <-errs:
			tb.Fatal(err)
		case <-tick.C:
		}
	drain:
		for more {
			select {
			case e, ok := <-sents:
				if !ok {
					more = false
					break drain
				}
				waiting[e.i] = e.at
			default:
				break drain
			}
		}
		if len(waiting) == 0 {
			continue
		}
		ids := make([]int, 0, len(waiting))
		pipe := s.rdb.Pipeline()
		cmds := make([]*redis.IntCmd, 0, len(waiting))
		for i := range waiting {
			ids = append(ids, i)
			cmds = append(cmds, pipe.Exists(ctx, orderstore.RecordKey(appID, fmt.Sprintf("p%07d", i))))
		}
		if _, err := pipe.Exec(ctx); err != nil {
			tb.Fatalf("look for records: %v", err)
		}
		now := time.Now()
		for j, c := range cmds {
			if c.Val() == 1 {
				lat = append(lat, now.Sub(waiting[ids[j]]))
				delete(waiting, ids[j])
			}
		}
		if p.Exited() {
			tb.Fatalf("%s exited early (%v) with %d of %d records; log:\n%s", p.Name, p.Err(), len(lat), paced, p.Tail(40))
		}
		if now.After(deadline) {
			tb.Fatalf("%d of %d records after %v", len(lat), paced, now.Sub(start))
		}
	}
	return lat
}

// evidenceDelays waits until the fake provider has seen an evidence call
// for every paced order, and returns for each the time from its decision
// call to its first evidence call, by the fake's receive times.
func (s *stack) evidenceDelays(tb testing.TB, p *proc) []time.Duration {
	tb.Helper()
	deadline := time.Now().Add(evidenceSettle)
	for {
		decision, evidence := map[string]time.Time{}, map[string]time.Time{}
		for _, r := range s.fake.Requests() {
			if r.Path != "/api/server/sync" || !strings.HasPrefix(r.OrderNo, "p") {
				continue
			}
			m := evidence
			if r.GetFile == "" || r.GetFile == tasks.GetFileNone {
				m = decision
			}
			if t, ok := m[r.OrderNo]; !ok || r.Time.Before(t) {
				m[r.OrderNo] = r.Time
			}
		}
		if len(evidence) == paced {
			out := make([]time.Duration, 0, paced)
			for o, t := range evidence {
				d, ok := decision[o]
				if !ok {
					tb.Fatalf("order %s: an evidence call and no decision call in the fake's log", o)
				}
				out = append(out, t.Sub(d))
			}
			return out
		}
		if p.Exited() {
			tb.Fatalf("%s exited early (%v) with %d of %d evidence calls; log:\n%s", p.Name, p.Err(), len(evidence), paced, p.Tail(40))
		}
		if time.Now().After(deadline) {
			tb.Fatalf("%d of %d orders had an evidence call %v after the last record", len(evidence), paced, evidenceSettle)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// quantile returns the q quantile of sorted d (nearest rank).
func quantile(d []time.Duration, q float64) time.Duration {
	i := int(q*float64(len(d))+0.5) - 1
	return d[min(max(i, 0), len(d)-1)]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// BenchmarkIdleRedis is the idle row: one facesync worker process with no
// tasks at all, at the default FACESYNC_POLL_INTERVAL (50ms) and at 1s for
// comparison. After idleSettle for its start-up, the commands redis-server
// processes in idleWindow are counted (INFO stats total_commands_processed,
// which counts commands a script runs too, and INFO commandstats for the
// biggest), less the benchmark's own INFO; with the worker's CPU (from
// /proc) and Redis's over the same window. A figure.
func BenchmarkIdleRedis(b *testing.B) {
	s := newStack(b, idasctest.Options{})
	intervals := []string{"50ms", "1s"}
	type result struct {
		perSec              float64
		top                 string
		workerCPU, redisCPU time.Duration
		startCPU            time.Duration // start-up and the settling time
	}
	res := make([]result, len(intervals))
	for b.Loop() {
		for i, iv := range intervals {
			b.StopTimer()
			s.reset(b)
			p := s.startWorker(b, 50, "FACESYNC_POLL_INTERVAL="+iv)
			time.Sleep(idleSettle)
			b.StartTimer()
			// INFO cpu before the first count and after the last, so that
			// the window holds one command of the benchmark's own.
			r0 := s.redisCPU(b)
			c0, w0 := s.commandStats(b), procCPU(b, p)
			time.Sleep(idleWindow)
			c1, w1 := s.commandStats(b), procCPU(b, p)
			r1 := s.redisCPU(b)
			b.StopTimer()
			if p.Exited() {
				b.Fatalf("%s exited while idle (%v); log:\n%s", p.Name, p.Err(), p.Tail(40))
			}
			stop(b, p)
			b.StartTimer()
			// The benchmark's own command in the window: the first INFO
			// (the second is counted only after it answered).
			c1["total"]--
			c1["info"]--
			res[i] = result{
				perSec: float64(c1["total"]-c0["total"]) / idleWindow.Seconds(),
				top:    topCommands(c0, c1, 4), workerCPU: w1 - w0, redisCPU: r1 - r0, startCPU: w0,
			}
		}
	}
	for i, iv := range intervals {
		r := res[i]
		b.ReportMetric(r.perSec, "poll-"+iv+"-commands/s")
		// What a worker process spends starting (and idling idleSettle):
		// row 1 counts a worker's whole process, start-up included.
		b.ReportMetric(float64(r.startCPU.Milliseconds()), "poll-"+iv+"-startup-CPU-ms")
		name, ref := "idle Redis commands, 1 worker process, no tasks, FACESYNC_POLL_INTERVAL "+iv, ""
		if i == 0 {
			name += " (default)"
			ref = fmt.Sprintf("%.0f commands/s at %s", res[1].perSec, intervals[1])
		} else {
			ref = fmt.Sprintf("%.0f commands/s at %s", res[0].perSec, intervals[0])
		}
		addRow(row{
			name: name,
			measured: fmt.Sprintf("%.0f commands/s (%s); worker CPU %.1f %%, Redis CPU %.1f %%",
				r.perSec, r.top, 100*r.workerCPU.Seconds()/idleWindow.Seconds(), 100*r.redisCPU.Seconds()/idleWindow.Seconds()),
			reference: ref,
			bar:       "figure",
			pass:      "figure",
		})
	}
}

// commandStats reads INFO stats and commandstats in one call: the calls of
// each command by name, and "total" for total_commands_processed.
func (s *stack) commandStats(tb testing.TB) map[string]int64 {
	tb.Helper()
	info, err := s.rdb.Info(context.Background(), "stats", "commandstats").Result()
	if err != nil {
		tb.Fatalf("redis INFO stats commandstats: %v", err)
	}
	out := map[string]int64{}
	for _, line := range strings.Split(info, "\n") {
		k, v, _ := strings.Cut(strings.TrimSpace(line), ":")
		switch {
		case k == "total_commands_processed":
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				tb.Fatalf("redis INFO: %s: %v", line, err)
			}
			out["total"] = n
		case strings.HasPrefix(k, "cmdstat_"):
			calls, _, _ := strings.Cut(strings.TrimPrefix(v, "calls="), ",")
			n, err := strconv.ParseInt(calls, 10, 64)
			if err != nil {
				tb.Fatalf("redis INFO: %s: %v", line, err)
			}
			out[strings.TrimPrefix(k, "cmdstat_")] = n
		}
	}
	return out
}

// topCommands names the n commands with the most calls between two
// commandStats, with their rates over idleWindow.
func topCommands(c0, c1 map[string]int64, n int) string {
	type kv struct {
		name string
		d    int64
	}
	var all []kv
	for k, v := range c1 {
		if k != "total" && v > c0[k] {
			all = append(all, kv{k, v - c0[k]})
		}
	}
	sort.Slice(all, func(i, j int) bool { return all[i].d > all[j].d || all[i].d == all[j].d && all[i].name < all[j].name })
	parts := make([]string, 0, n)
	for _, e := range all[:min(n, len(all))] {
		parts = append(parts, fmt.Sprintf("%s %.0f/s", strings.ToUpper(e.name), float64(e.d)/idleWindow.Seconds()))
	}
	return strings.Join(parts, ", ")
}

// procCPU returns the CPU a running child has used, user and system, from
// /proc/PID/stat (fields 14 and 15, in clock ticks of 1/100 s on Linux).
func procCPU(tb testing.TB, p *proc) time.Duration {
	tb.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.Cmd.Process.Pid))
	if err != nil {
		tb.Fatalf("read %s's CPU: %v", p.Name, err)
	}
	// The command name (field 2) may hold spaces; the fields after it do not.
	_, rest, ok := strings.Cut(string(b), ") ")
	f := strings.Fields(rest)
	if !ok || len(f) < 13 {
		tb.Fatalf("read %s's CPU: malformed /proc stat %q", p.Name, b)
	}
	var ticks int64
	for _, s := range f[11:13] { // utime and stime: fields 14 and 15 of the whole line
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			tb.Fatalf("read %s's CPU: %v", p.Name, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * 10 * time.Millisecond
}
