package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestBinaryLinksNoTestCode: the facesync binary ships the fake provider
// (fake-idasc, demo) but never the testing package or httptest, which
// would register test flags and test servers in production.
func TestBinaryLinksNoTestCode(t *testing.T) {
	t.Parallel()
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to list the binary's packages: %v", err)
	}
	out, err := exec.Command(gobin, "list", "-deps", "github.com/facesync/facesync/cmd/facesync").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 50 {
		t.Fatalf("go list -deps listed only %d packages: %s", len(deps), out)
	}
	for _, p := range deps {
		if p == "testing" || p == "net/http/httptest" || strings.HasSuffix(p, "/workertest") || strings.HasSuffix(p, "/storagetest") || strings.HasSuffix(p, "/ticketcachetest") {
			t.Errorf("the facesync binary links %s", p)
		}
	}
}
