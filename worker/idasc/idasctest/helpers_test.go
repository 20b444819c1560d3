package idasctest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/facesync/facesync/worker/idasc"
	"github.com/facesync/facesync/worker/workertest/testclock"
)

const (
	testApp    = "TIDA0001"
	testSecret = "s3cret"
)

// clock is the tests' manual clock.
type clock = testclock.Clock

func newClock() *clock { return testclock.New(time.Date(2026, 11, 28, 1, 2, 3, 0, time.UTC)) }

// setup starts a fake with one app and the given clock (nil: real time).
func setup(t testing.TB, opts Options, clk *clock) *Server {
	t.Helper()
	if opts.Apps == nil {
		opts.Apps = map[string]string{testApp: testSecret}
	}
	if clk != nil {
		opts.Now = clk.Now
	}
	return NewServer(t, opts)
}

// answer is one HTTP answer as a client sees it.
type answer struct {
	status  int
	raw     []byte
	readErr error          // the body could not be read to its end
	m       map[string]any // decoded JSON, nil when it is not JSON
}

func (a answer) str(key string) string {
	v, ok := a.m[key]
	if !ok {
		return "<missing>"
	}
	return fmt.Sprint(v)
}

// result returns the field of the result object, "<missing>" when absent.
func (a answer) result(key string) string {
	r, ok := a.m["result"].(map[string]any)
	if !ok {
		return "<missing>"
	}
	v, ok := r[key]
	if !ok {
		return "<missing>"
	}
	return fmt.Sprint(v)
}

func get(t testing.TB, ctx context.Context, u string) answer {
	t.Helper()
	a, err := tryGet(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// tryGet is get for goroutines other than the test's.
func tryGet(ctx context.Context, u string) (answer, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return answer{}, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return answer{}, fmt.Errorf("GET %s: %w", req.URL.Path, err)
	}
	defer resp.Body.Close()
	a := answer{status: resp.StatusCode}
	a.raw, a.readErr = io.ReadAll(resp.Body)
	if a.readErr == nil && resp.StatusCode == http.StatusOK {
		d := json.NewDecoder(bytes.NewReader(a.raw))
		d.UseNumber()
		if err := d.Decode(&a.m); err != nil {
			return a, fmt.Errorf("GET %s: invalid JSON %.200q: %w", req.URL.Path, a.raw, err)
		}
	}
	return a, nil
}

func tokenURL(base, app, secret string) string {
	return base + "/api/oauth2/access_token?" + url.Values{
		"app_id": {app}, "secret": {secret}, "grant_type": {"client_credential"}, "version": {idasc.Version},
	}.Encode()
}

func ticketURL(base, app, token string) string {
	return base + "/api/oauth2/api_ticket?" + url.Values{
		"app_id": {app}, "access_token": {token}, "type": {"SIGN"}, "version": {idasc.Version},
	}.Encode()
}

func syncURL(base, app, orderNo, ticket, getFile string) string {
	nonce := idasc.NewNonce()
	v := url.Values{
		"app_id": {app}, "order_no": {orderNo}, "version": {idasc.Version}, "nonce": {nonce},
		"sign": {idasc.Sign(app, orderNo, idasc.Version, ticket, nonce)},
	}
	if getFile != "" {
		v.Set("get_file", getFile)
	}
	return base + "/api/server/sync?" + v.Encode()
}

// mintToken fetches a new access token for testApp.
func mintToken(t testing.TB, s *Server) string {
	t.Helper()
	a := get(t, context.Background(), tokenURL(s.URL, testApp, testSecret))
	if c := a.str("code"); c != "0" {
		t.Fatalf("access_token code = %s, want 0", c)
	}
	return a.str("access_token")
}

// mintTicket fetches a SIGN ticket with token and returns it with its expire_in.
func mintTicket(t testing.TB, s *Server, token string) (string, string) {
	t.Helper()
	a := get(t, context.Background(), ticketURL(s.URL, testApp, token))
	if c := a.str("code"); c != "0" {
		t.Fatalf("api_ticket code = %s, want 0", c)
	}
	tickets, ok := a.m["tickets"].([]any)
	if !ok || len(tickets) != 1 {
		t.Fatalf("api_ticket tickets = %v, want one", a.m["tickets"])
	}
	tk := tickets[0].(map[string]any)
	return fmt.Sprint(tk["value"]), fmt.Sprint(tk["expire_in"])
}

// credentials mints a token and a ticket for testApp.
func credentials(t testing.TB, s *Server) string {
	t.Helper()
	tk, _ := mintTicket(t, s, mintToken(t, s))
	return tk
}

func syncOnce(t testing.TB, s *Server, ticket, orderNo, getFile string) answer {
	t.Helper()
	return get(t, context.Background(), syncURL(s.URL, testApp, orderNo, ticket, getFile))
}
