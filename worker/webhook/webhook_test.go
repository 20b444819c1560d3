package webhook_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/facesync/facesync/worker/webhook"
)

const secret = "whsec-test-0123456789"

func TestParse(t *testing.T) {
	t.Parallel()
	good := "# partner webhooks\n\nTIDA0001 https://partner.example/hooks/facesync " + secret + "\n  TIDA0002\thttp://127.0.0.1:8080/h other-secret  \nTIDA0003 http://localhost/h s3\nTIDA0004 http://[::1]:9/h s4\n"
	eps, err := webhook.Parse(strings.NewReader(good), false)
	if err != nil {
		t.Fatalf("Parse(good) = %v", err)
	}
	if len(eps) != 4 || eps[0].AppID != "TIDA0001" || eps[0].URL != "https://partner.example/hooks/facesync" || eps[0].Secret != secret || eps[1].Secret != "other-secret" {
		t.Errorf("Parse(good) = %+v", eps)
	}
	if s := eps[0].String(); strings.Contains(s, secret) {
		t.Errorf("Endpoint.String() = %q, shows the secret", s)
	}

	tests := []struct {
		in       string
		insecure bool
		want     string
	}{
		{"TIDA0001 https://a.example/h\n", false, "line 1: want APP_ID URL SECRET, found 2 fields"},
		{"# c\nTIDA0001 https://a.example/h " + secret + " extra\n", false, "line 2: want APP_ID URL SECRET, found 4 fields"},
		{"\n\nTID/A https://a.example/h " + secret + "\n", false, `line 3: app id "TID/A"`},
		{"TIDA0001 http://partner.example/h " + secret + "\n", false, "line 1: http:// is allowed only on a loopback host"},
		{"TIDA0001 ftp://partner.example/h " + secret + "\n", false, `line 1: scheme "ftp"`},
		{"TIDA0001 /relative " + secret + "\n", false, "line 1: the URL is not an absolute"},
		{"TIDA0001 https://a.example/h " + secret + "\nTIDA0001 https://b.example/h " + secret + "\n", false, "line 2: app TIDA0001 has a webhook on line 1 already"},
		{"TIDA0001 https://a.example/h#x " + secret + "\n", false, "line 1: the URL has a fragment"},
	}
	for _, tt := range tests {
		_, err := webhook.Parse(strings.NewReader(tt.in), tt.insecure)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Parse(%q) error = %v, want one containing %q", tt.in, err, tt.want)
		}
		if err != nil && strings.Contains(err.Error(), secret) {
			t.Errorf("Parse(%q) error %q shows the secret", tt.in, err)
		}
	}
	if _, err := webhook.Parse(strings.NewReader("TIDA0001 http://partner.example/h "+secret+"\n"), true); err != nil {
		t.Errorf("Parse(http:// non-loopback, insecure) = %v, want nil", err)
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	ok := webhook.Config{Endpoints: []webhook.Endpoint{{AppID: "A", URL: "http://127.0.0.1:1/h", Secret: "s"}}}
	if err := ok.Validate(); err != nil {
		t.Errorf("Validate(loopback http) = %v", err)
	}
	var ce *webhook.ConfigError
	for _, c := range []webhook.Config{
		{Endpoints: []webhook.Endpoint{{AppID: "A", URL: "http://partner.example/h", Secret: "s"}}},
		{Endpoints: []webhook.Endpoint{{AppID: "A", URL: "https://partner.example/h"}}},
		{Wait: -time.Second},
		{RetryBase: time.Minute, RetryCap: time.Second},
	} {
		if err := c.Validate(); !errors.As(err, &ce) {
			t.Errorf("Validate(%+v) = %v, want a *ConfigError", c, err)
		}
	}
}

func TestSignVerify(t *testing.T) {
	t.Parallel()
	body := []byte(`{"id":"A:o:decision","event":"decision","record":{}}`)
	at := time.Unix(1764547200, 0)
	sig := webhook.Sign(secret, at, body)
	if err := webhook.Verify(secret, sig, body, at.Add(time.Minute), webhook.Tolerance); err != nil {
		t.Errorf("Verify(own signature) = %v", err)
	}
	if err := webhook.Verify(secret, sig, append(body, ' '), at, webhook.Tolerance); !errors.Is(err, webhook.ErrBadSignature) {
		t.Errorf("Verify(changed body) = %v, want ErrBadSignature", err)
	}
	if err := webhook.Verify("other", sig, body, at, webhook.Tolerance); !errors.Is(err, webhook.ErrBadSignature) {
		t.Errorf("Verify(other secret) = %v, want ErrBadSignature", err)
	}
	if err := webhook.Verify(secret, sig, body, at.Add(6*time.Minute), webhook.Tolerance); !errors.Is(err, webhook.ErrStale) {
		t.Errorf("Verify(6 minutes later) = %v, want ErrStale", err)
	}
	if err := webhook.Verify(secret, "garbage", body, at, webhook.Tolerance); !errors.Is(err, webhook.ErrBadSignature) {
		t.Errorf("Verify(garbage) = %v, want ErrBadSignature", err)
	}
}

// TestSignKnownAnswer pins the signature to HMAC-SHA256 over "{t}.{body}"
// with a value computed by a second implementation (Python's hmac module:
// hmac.new(b"whsec-test-0123456789", b"1764547200.{}", "sha256").hexdigest()).
func TestSignKnownAnswer(t *testing.T) {
	t.Parallel()
	got := webhook.Sign(secret, time.Unix(1764547200, 0), []byte("{}"))
	if want := "t=1764547200,v1=" + knownAnswer; got != want {
		t.Errorf("Sign = %q, want %q", got, want)
	}
}

const knownAnswer = "f583ab0b0434c515e623ba43371548f2f11b63216207c634f7ba52a80c63e1e2"

func endpoint(url string) webhook.Endpoint {
	return webhook.Endpoint{AppID: "TIDA0001", URL: url, Secret: secret}
}

func TestSendHeadersAndStatus(t *testing.T) {
	t.Parallel()
	var status atomic.Int32
	var got atomic.Pointer[http.Request]
	var gotBody atomic.Pointer[[]byte]
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got.Store(r)
		gotBody.Store(&b)
		w.WriteHeader(int(status.Load()))
	}))
	defer srv.Close()
	s := webhook.NewSender(2*time.Second, nil, nil)
	body := []byte(`{"id":"TIDA0001:o1:decision","event":"decision","record":{"status":"passed"}}`)
	for _, code := range []int{200, 202, 204} {
		status.Store(int32(code))
		a, err := s.Send(context.Background(), endpoint(srv.URL+"/hook?token=partner-token"), "TIDA0001:o1:decision", "decision", body)
		if err != nil || !a.Delivered || a.Status != code {
			t.Errorf("Send answered %d = %+v, %v, want delivered", code, a, err)
		}
	}
	r := got.Load()
	if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" || r.Header.Get(webhook.HeaderEvent) != "decision" || r.Header.Get(webhook.HeaderDelivery) != "TIDA0001:o1:decision" {
		t.Errorf("request = %s %v", r.Method, r.Header)
	}
	if err := webhook.Verify(secret, r.Header.Get(webhook.HeaderSignature), *gotBody.Load(), time.Now(), webhook.Tolerance); err != nil {
		t.Errorf("receiver's Verify = %v", err)
	}
	for _, code := range []int{400, 429, 500, 503} {
		status.Store(int32(code))
		a, err := s.Send(context.Background(), endpoint(srv.URL+"/hook?token=partner-token"), "TIDA0001:o1:decision", "decision", body)
		if err == nil || a.Delivered || !strings.Contains(err.Error(), "HTTP ") {
			t.Errorf("Send answered %d = %+v, %v, want an error naming the status", code, a, err)
		}
		if err != nil && strings.Contains(err.Error(), "partner-token") {
			t.Errorf("error %q shows the URL's query", err)
		}
	}
}

func TestSendFollowsNoRedirect(t *testing.T) {
	t.Parallel()
	var followed atomic.Int32
	mux := http.NewServeMux()
	mux.HandleFunc("/moved", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/target", http.StatusTemporaryRedirect)
	})
	mux.HandleFunc("/target", func(w http.ResponseWriter, r *http.Request) { followed.Add(1) })
	srv := httptest.NewServer(mux)
	defer srv.Close()
	a, err := webhook.NewSender(2*time.Second, nil, nil).Send(context.Background(), endpoint(srv.URL+"/moved"), "id", "decision", []byte(`{}`))
	if err == nil || a.Delivered || a.Status != http.StatusTemporaryRedirect || !strings.Contains(err.Error(), "redirects are not followed") {
		t.Errorf("Send(redirect) = %+v, %v, want HTTP 307 not followed", a, err)
	}
	if n := followed.Load(); n != 0 {
		t.Errorf("the redirect's target got %d requests, want 0", n)
	}
}

func TestSendTimeoutAndRefused(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-release }))
	defer srv.Close()
	defer close(release)
	_, err := webhook.NewSender(200*time.Millisecond, nil, nil).Send(context.Background(), endpoint(srv.URL), "id", "decision", []byte(`{}`))
	if err == nil || !strings.Contains(err.Error(), "no answer within the timeout") {
		t.Errorf("Send(slow receiver) = %v, want a timeout", err)
	}

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	if _, err := webhook.NewSender(time.Second, nil, nil).Send(context.Background(), endpoint("http://"+addr+"/h"), "id", "decision", []byte(`{}`)); err == nil || !strings.Contains(err.Error(), "refused") {
		t.Errorf("Send(closed port) = %v, want connection refused", err)
	}
}

func TestRetryDelay(t *testing.T) {
	t.Parallel()
	c := webhook.Config{}.WithDefaults()
	now := time.Now()
	for n, want := range []time.Duration{5 * time.Second, 10 * time.Second, 20 * time.Second} {
		if d := c.RetryDelay(n, now, now); d < want/2 || d > want {
			t.Errorf("RetryDelay(%d) = %v, want within [%v, %v]", n, d, want/2, want)
		}
	}
	if d := c.RetryDelay(30, now, now); d < 30*time.Minute || d > time.Hour {
		t.Errorf("RetryDelay(30) = %v, want capped at 1h (with jitter)", d)
	}
	// Never past the wait: the last attempt falls on its end.
	if d := c.RetryDelay(30, now.Add(-24*time.Hour+time.Minute), now); d != time.Minute {
		t.Errorf("RetryDelay a minute before the wait ends = %v, want 1m", d)
	}
}

func TestNewBody(t *testing.T) {
	t.Parallel()
	b, err := webhook.NewBody("A:o:evidence", "evidence", []byte(`{"app_id":"A","evidence":{"status":"stored"}}`))
	if want := `{"id":"A:o:evidence","event":"evidence","record":{"app_id":"A","evidence":{"status":"stored"}}}`; err != nil || string(b) != want {
		t.Errorf("NewBody = %s, %v, want %s", b, err, want)
	}
	if _, err := webhook.NewBody("A:o:evidence", "evidence", []byte(`{`)); err == nil {
		t.Error("NewBody(broken record) = nil error")
	}
}
