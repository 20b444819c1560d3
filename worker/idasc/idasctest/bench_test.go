package idasctest

import (
	"bufio"
	"io"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// BenchmarkServe200MBEvidence serves a 200 MiB video over loopback to a
// client that discards it, and reports how much the heap (server and
// client together, sampled every 2 ms) and the process's peak RSS grew.
func BenchmarkServe200MBEvidence(b *testing.B) {
	const size = 200 << 20
	s := setup(b, Options{EvidenceDelay: -1}, nil)
	s.SetScenario(testApp, "big", Scenario{NoPhoto: true, VideoSize: size})
	u := syncURL(s.URL, testApp, "big", credentials(b, s), "3")

	runtime.GC()
	var base runtime.MemStats
	runtime.ReadMemStats(&base)
	hwmBefore := vmHWM(b)
	var (
		wg   sync.WaitGroup
		stop = make(chan struct{})
		peak = base.HeapInuse
	)
	wg.Go(func() {
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		var m runtime.MemStats
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				runtime.ReadMemStats(&m)
				peak = max(peak, m.HeapInuse)
			}
		}
	})

	b.SetBytes(size)
	for b.Loop() {
		resp, err := http.Get(u)
		if err != nil {
			b.Fatal(err)
		}
		n, err := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil {
			b.Fatal(err)
		}
		if n < size*4/3 {
			b.Fatalf("answer of %d bytes, want the base64 of %d", n, size)
		}
	}
	close(stop)
	wg.Wait()
	b.ReportMetric(float64(peak-base.HeapInuse)/(1<<20), "peak-heap-growth-MiB")
	b.ReportMetric(float64(vmHWM(b)-hwmBefore)/(1<<10), "rss-hwm-growth-MiB")
}

// vmHWM returns the process's peak resident set size in KiB (Linux).
func vmHWM(b *testing.B) int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				b.Fatal(err)
			}
			return kb
		}
	}
	b.Fatal("no VmHWM in /proc/self/status")
	return 0
}
