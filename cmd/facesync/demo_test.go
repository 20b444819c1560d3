package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestMain lets the test binary stand in for the facesync binary: with
// FACESYNC_TEST_AS_BINARY set it runs the command line it was given, so
// tests run real subprocesses without a separate build.
func TestMain(m *testing.M) {
	if os.Getenv("FACESYNC_TEST_AS_BINARY") == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

// facesyncCmd returns a command running this test binary as facesync.
func facesyncCmd(ctx context.Context, dir string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, os.Args[0], args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "FACESYNC_TEST_AS_BINARY=1")
	return cmd
}

func TestDemo(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := facesyncCmd(ctx, dir, "demo")
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("facesync demo: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	out := stdout.String()
	for _, o := range demoOrders {
		if !lineWith(out, o.orderNo, "passed") && !lineWith(out, o.orderNo, "failed") {
			t.Errorf("demo table has no final row for %s:\n%s", o.orderNo, out)
		}
	}
	for _, want := range [][]string{
		{"demo-passed", "passed", "0", "stored", "photo.jpg", "video.mp4"},
		{"demo-failed", "failed", "66660015", "stored"},
		{"demo-late-evidence", "passed", "stored", "photo.png"},
		{"demo-decision-only", "passed", "skipped"},
		{"ok: 2 files match their manifest"},
	} {
		if !lineWith(out, want...) {
			t.Errorf("demo output lacks a line with %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "110101199003071234") || strings.Contains(out, "张三") {
		t.Errorf("demo output shows an unmasked id number or name")
	}
	base := filepath.Join(dir, "facesync-demo", "buckets", demoBucket, "evidence", demoAppID)
	for _, f := range []string{"demo-passed/photo.jpg", "demo-passed/video.mp4", "demo-passed/manifest.json", "demo-late-evidence/photo.png"} {
		if st, err := os.Stat(filepath.Join(base, f)); err != nil || st.Size() == 0 {
			t.Errorf("demo file %s: %v", f, err)
		}
	}
	if _, err := os.Stat(filepath.Join(base, "demo-decision-only")); err == nil {
		t.Errorf("demo stored evidence for the decision-only order")
	}
}

func TestDemoFolderProblemIsOneLine(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	blocker := filepath.Join(dir, "file")
	if err := os.WriteFile(blocker, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errb lockedBuffer
	m := &Main{Stdout: &out, Stderr: &errb, Getenv: func(string) string { return "" }}
	code := m.Run(context.Background(), []string{"demo", "--dir", filepath.Join(blocker, "sub")})
	if code != 2 || strings.Count(strings.TrimSpace(errb.String()), "\n") != 0 || !strings.Contains(errb.String(), "demo folder") {
		t.Errorf("demo on a bad folder: exit %d, stderr %q, want 2 and one line naming the folder", code, errb.String())
	}
}
