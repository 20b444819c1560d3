package storage_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/facesync/facesync/storage"
	"github.com/facesync/facesync/storage/storagetest"
)

// envRSSChild makes the test binary a child that streams one file to the
// S3 server named in it and reports its peak memory (see rssChild).
const envRSSChild = "FACESYNC_STORAGE_RSS_CHILD"

// rssJob is what the parent hands the child, as JSON in envRSSChild.
type rssJob struct {
	Endpoint, AccessKey, SecretKey, Bucket string
	Size                                   int64
	Parallel                               int // uploads at once, as a pod with FACESYNC_EVIDENCE_CONCURRENCY runs them
}

// rssResult is what the child prints on its last line of stdout.
type rssResult struct {
	BaseKiB, PeakKiB int64 // VmHWM before and after the upload
	Seconds          float64
}

func TestMain(m *testing.M) {
	if job := os.Getenv(envRSSChild); job != "" {
		os.Exit(rssChild(job))
	}
	os.Exit(m.Run())
}

// rssChild streams a generated file of job.Size bytes through PutFile with
// the default configuration and prints the process's peak RSS. It runs in
// a process of its own, so VmHWM is this upload's alone; versitygw runs in
// yet another process.
func rssChild(jobJSON string) int {
	var job rssJob
	if err := json.Unmarshal([]byte(jobJSON), &job); err != nil {
		fmt.Fprintln(os.Stderr, "rss child:", err)
		return 2
	}
	sink, err := storage.NewS3(storagetest.NewS3Client(job.Endpoint, job.AccessKey, job.SecretKey), storage.Config{Bucket: job.Bucket})
	if err != nil {
		fmt.Fprintln(os.Stderr, "rss child:", err)
		return 2
	}
	base, err := vmHWM()
	if err != nil {
		fmt.Fprintln(os.Stderr, "rss child:", err)
		return 2
	}
	start := time.Now()
	errs := make(chan error, job.Parallel)
	for i := range job.Parallel {
		go func() {
			order := fmt.Sprintf("rss%d-%d", job.Size, i)
			f, err := sink.PutFile(context.Background(), "TIDA0001", order, storage.KindVideo, &videoReader{left: job.Size})
			if err == nil && f.Size != job.Size {
				err = fmt.Errorf("stored %d bytes, want %d", f.Size, job.Size)
			}
			errs <- err
		}()
	}
	for range job.Parallel {
		if err := <-errs; err != nil {
			fmt.Fprintln(os.Stderr, "rss child:", err)
			return 1
		}
	}
	secs := time.Since(start).Seconds()
	peak, err := vmHWM()
	if err != nil {
		fmt.Fprintln(os.Stderr, "rss child:", err)
		return 2
	}
	out, _ := json.Marshal(rssResult{BaseKiB: base, PeakKiB: peak, Seconds: secs})
	fmt.Println(string(out))
	return 0
}

// vmHWM reads the process's peak resident set size in KiB.
func vmHWM() (int64, error) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			return strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
		}
	}
	return 0, fmt.Errorf("no VmHWM in /proc/self/status")
}

// videoReader generates an MP4-looking file of left bytes without holding
// it: an ftyp box, then a pattern.
type videoReader struct {
	off, left int64
}

func (v *videoReader) Read(p []byte) (int, error) {
	if v.left <= 0 {
		return 0, io.EOF
	}
	n := int64(len(p))
	if n > v.left {
		n = v.left
	}
	head := []byte{0, 0, 0, 0x20, 'f', 't', 'y', 'p', 'i', 's', 'o', 'm'}
	for i := int64(0); i < n; i++ {
		o := v.off + i
		if o < int64(len(head)) {
			p[i] = head[o]
		} else {
			p[i] = byte(o*31 + o>>13)
		}
	}
	v.off += n
	v.left -= n
	return int(n), nil
}

// runRSSChild uploads parallel files of size bytes at once in a child
// process and returns its result.
func runRSSChild(tb testing.TB, srv *storagetest.Server, size int64, parallel int) rssResult {
	tb.Helper()
	job, _ := json.Marshal(rssJob{Endpoint: srv.Endpoint, AccessKey: srv.AccessKey, SecretKey: srv.SecretKey, Bucket: srv.Bucket, Size: size, Parallel: parallel})
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envRSSChild+"="+string(job))
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		tb.Fatalf("rss child for %d bytes: %v", size, err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	var res rssResult
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &res); err != nil {
		tb.Fatalf("rss child for %d bytes printed %q: %v", size, out, err)
	}
	return res
}

// BenchmarkPutFileRSS streams 10, 100 and 200 MB videos through PutFile to
// versitygw, each in a fresh process, and reports that process's peak RSS
// (peak-RSS-MiB): it must stay flat as the size grows. 4x100MB runs four
// uploads at once, as a pod does with the default
// FACESYNC_EVIDENCE_CONCURRENCY.
func BenchmarkPutFileRSS(b *testing.B) {
	srv := storagetest.StartServer(b)
	for _, bb := range []struct {
		mb       int64
		parallel int
	}{{10, 1}, {100, 1}, {200, 1}, {100, 4}} {
		name := fmt.Sprintf("%dMB", bb.mb)
		if bb.parallel > 1 {
			name = fmt.Sprintf("%dx%s", bb.parallel, name)
		}
		b.Run(name, func(b *testing.B) {
			size := bb.mb * 1000 * 1000
			var peak, base int64
			var secs float64
			for b.Loop() {
				res := runRSSChild(b, srv, size, bb.parallel)
				peak, base = max(peak, res.PeakKiB), max(base, res.BaseKiB)
				secs += res.Seconds
			}
			b.ReportMetric(float64(peak)/1024, "peak-RSS-MiB")
			b.ReportMetric(float64(base)/1024, "start-RSS-MiB")
			b.ReportMetric(float64(size)*float64(bb.parallel)*float64(b.N)/secs/1e6, "upload-MB/s")
		})
	}
}
