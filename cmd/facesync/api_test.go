package main

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// freeAddr returns a loopback address nothing listens on right now.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestAPICommand runs `facesync api-key new`, then `facesync api` and a
// worker in-process against real Redis, versitygw and the fake provider:
// three identical POSTs make one task and one decision call, the record
// comes back through GET, the ops endpoints answer, and the API exits 0
// on its signal.
func TestAPICommand(t *testing.T) {
	t.Parallel()
	st := newStack(t)
	code, out, errOut := st.run(t, "api-key", "new", "--apps", testApp, "--id", "partner1")
	if code != 0 {
		t.Fatalf("api-key new = %d, %s", code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) < 2 {
		t.Fatalf("api-key new printed %q", out)
	}
	token, line := lines[1], lines[len(lines)-1]
	if !strings.HasPrefix(token, "fsk_") || !strings.HasPrefix(line, "partner1 ") || strings.Contains(line, token) {
		t.Fatalf("api-key new printed %q", out)
	}
	keys := filepath.Join(t.TempDir(), "keys")
	if err := os.WriteFile(keys, []byte("# partners\n"+line+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	st.env["FACESYNC_API_KEYS_FILE"] = keys
	st.env["FACESYNC_API_ADDR"] = freeAddr(t)

	api := st.start(t, "api")
	st.startWorker(t)

	base := "http://" + st.env["FACESYNC_API_ADDR"]
	call := func(method, path, body string) (int, []byte) {
		t.Helper()
		var rd io.Reader
		if body != "" {
			rd = strings.NewReader(body)
		}
		req, err := http.NewRequest(method, base+path, rd)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	for i := 0; i < 3; i++ {
		if code, b := call("POST", "/v1/orders", `{"app_id":"`+testApp+`","order_no":"api1","get_file":"0"}`); code != 202 && code != 200 {
			t.Fatalf("POST #%d = %d %s, want 202 (or 200 once decided)", i+1, code, b)
		}
	}
	var rec []byte
	deadline := time.Now().Add(60 * time.Second)
	for {
		code, b := call("GET", "/v1/orders/"+testApp+"/api1", "")
		if code == 200 {
			rec = b
			break
		}
		if code != 202 || time.Now().After(deadline) {
			t.Fatalf("GET = %d %s, want 202 then 200 within 60s", code, b)
		}
		time.Sleep(50 * time.Millisecond)
	}
	stored, err := st.db.Client.Get(context.Background(), "facesync:decision:"+testApp+":api1").Bytes()
	if err != nil || !bytes.Equal(rec, stored) {
		t.Errorf("GET 200 body %s, want the record as stored %s (%v)", rec, stored, err)
	}
	decisions := 0
	for _, q := range st.fake.Requests() {
		if q.OrderNo == "api1" && q.GetFile == "" {
			decisions++
		}
	}
	if decisions != 1 {
		t.Errorf("%d decision calls at the provider for 3 identical POSTs, want 1", decisions)
	}

	for _, p := range []string{"/healthz", "/readyz", "/metrics"} {
		resp, err := http.Get("http://" + api.m.HTTPAddr() + p)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || (p == "/metrics" && !bytes.Contains(b, []byte(`facesync_api_requests_total{code="202",route="/v1/orders"}`))) {
			t.Errorf("GET %s = %d %.300s", p, resp.StatusCode, b)
		}
	}

	api.shutdown(t)
	logs := api.logs
	if strings.Contains(logs.String(), token) {
		t.Error("the API key appears in the api's logs")
	}
	if !strings.Contains(logs.String(), `"route":"/v1/orders"`) {
		t.Errorf("no access line with the route pattern in the logs: %.500s", logs.String())
	}
}

func TestAPICommandConfig(t *testing.T) {
	t.Parallel()
	st := &stack{env: map[string]string{"FACESYNC_S3_BUCKET": "b"}}
	if code, _, errOut := st.run(t, "api"); code != exitError || !strings.Contains(errOut, "FACESYNC_API_KEYS_FILE") {
		t.Errorf("api without a keys file = %d %q, want 2 naming FACESYNC_API_KEYS_FILE", code, errOut)
	}
	bad := filepath.Join(t.TempDir(), "keys")
	if err := os.WriteFile(bad, []byte("# ok\nk1 nothex A1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	st.env["FACESYNC_API_KEYS_FILE"] = bad
	if code, _, errOut := st.run(t, "api"); code != exitError || !strings.Contains(errOut, "line 2") {
		t.Errorf("api with a malformed keys file = %d %q, want 2 naming line 2", code, errOut)
	}
	st.env["FACESYNC_S3_PUBLIC_ENDPOINT"] = "minio:9000"
	if code, _, errOut := st.run(t, "api"); code != exitError || !strings.Contains(errOut, "FACESYNC_S3_PUBLIC_ENDPOINT") {
		t.Errorf("api with a bad public endpoint = %d %q, want 2 naming it", code, errOut)
	}
	for _, args := range [][]string{{"api-key"}, {"api-key", "new"}, {"api-key", "new", "--apps", "a/b"}} {
		if code, _, _ := st.run(t, args...); code != exitError {
			t.Errorf("%q = %d, want 2", args, code)
		}
	}
}

// TestAPICommandDrains holds a request in flight (its body half sent)
// while the API gets its signal: new connections are refused, the request
// still gets its answer, and the API exits 0.
func TestAPICommandDrains(t *testing.T) {
	t.Parallel()
	st := newStack(t)
	code, out, errOut := st.run(t, "api-key", "new", "--apps", "*", "--id", "drain")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) < 2 {
		t.Fatalf("api-key new = %d, %q, %s", code, out, errOut)
	}
	token := lines[1]
	keys := filepath.Join(t.TempDir(), "keys")
	if err := os.WriteFile(keys, []byte(lines[len(lines)-1]+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	st.env["FACESYNC_API_KEYS_FILE"] = keys
	addr := freeAddr(t)
	st.env["FACESYNC_API_ADDR"] = addr

	api := st.start(t, "api")

	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	body := `{"app_id":"` + testApp + `","order_no":"drain1"}`
	head := "POST /v1/orders HTTP/1.1\r\nHost: " + addr + "\r\nAuthorization: Bearer " + token +
		"\r\nContent-Type: application/json\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n"
	if _, err := io.WriteString(conn, head+body[:10]); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // let the server read the headers: the connection is active
	api.stop()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("the API still accepts connections 10s after its signal")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := io.WriteString(conn, body[10:]); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("the in-flight request got no answer: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Errorf("in-flight POST = %d, want 202", resp.StatusCode)
	}
	api.shutdown(t)
}
