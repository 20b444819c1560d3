package idasctest

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/facesync/facesync/worker/idasc"
)

func TestAccessToken(t *testing.T) {
	t.Parallel()
	clk := newClock()
	s := setup(t, Options{}, clk)
	a := get(t, context.Background(), tokenURL(s.URL, testApp, testSecret))
	want := map[string]string{
		"code":            "0",
		"msg":             "请求成功",
		"transactionTime": "20261128090203",
		"expire_in":       "7200",
		"expire_time":     "20261128110203",
	}
	for k, v := range want {
		if got := a.str(k); got != v {
			t.Errorf("access_token %s = %q, want %q", k, got, v)
		}
	}
	if tok := a.str("access_token"); len(tok) < 32 {
		t.Errorf("access_token = %q, want 32 characters or more", tok)
	}
	if n := s.TokenMints(testApp); n != 1 {
		t.Errorf("TokenMints = %d, want 1", n)
	}
}

func TestAccessTokenRefused(t *testing.T) {
	t.Parallel()
	s := setup(t, Options{}, nil)
	tests := []struct {
		name   string
		params url.Values
		code   string
	}{
		{"wrong secret", url.Values{"app_id": {testApp}, "secret": {"nope"}, "grant_type": {"client_credential"}, "version": {"1.0.0"}}, CodeUnknownApp},
		{"unknown app", url.Values{"app_id": {"TIDA9999"}, "secret": {testSecret}, "grant_type": {"client_credential"}, "version": {"1.0.0"}}, CodeUnknownApp},
		{"no secret", url.Values{"app_id": {testApp}, "grant_type": {"client_credential"}, "version": {"1.0.0"}}, CodeUnknownApp},
		{"wrong grant_type", url.Values{"app_id": {testApp}, "secret": {testSecret}, "grant_type": {"password"}, "version": {"1.0.0"}}, CodeRejected},
		{"wrong version", url.Values{"app_id": {testApp}, "secret": {testSecret}, "grant_type": {"client_credential"}, "version": {"2.0.0"}}, CodeRejected},
	}
	for _, tt := range tests {
		a := get(t, context.Background(), s.URL+"/api/oauth2/access_token?"+tt.params.Encode())
		if got := a.str("code"); got != tt.code {
			t.Errorf("access_token(%s) code = %s, want %s", tt.name, got, tt.code)
		}
		if got := a.str("access_token"); got != "<missing>" {
			t.Errorf("access_token(%s) gave a token", tt.name)
		}
	}
	if n := s.TokenMints(testApp); n != 0 {
		t.Errorf("TokenMints = %d, want 0", n)
	}
}

func TestTicket(t *testing.T) {
	t.Parallel()
	clk := newClock()
	s := setup(t, Options{}, clk)
	tok := mintToken(t, s)
	a := get(t, context.Background(), ticketURL(s.URL, testApp, tok))
	if got := a.str("code"); got != "0" {
		t.Fatalf("api_ticket code = %s, want 0", got)
	}
	tk := a.m["tickets"].([]any)[0].(map[string]any)
	if got := tk["expire_in"].(interface{ String() string }).String(); got != "3600" {
		t.Errorf("ticket expire_in = %s, want 3600", got)
	}
	if got := tk["expire_time"]; got != "20261128100203" {
		t.Errorf("ticket expire_time = %v, want 20261128100203", got)
	}

	tests := []struct {
		name   string
		params url.Values
		code   string
	}{
		{"unknown token", url.Values{"app_id": {testApp}, "access_token": {"x" + tok}, "type": {"SIGN"}, "version": {"1.0.0"}}, CodeRejected},
		{"NONCE type", url.Values{"app_id": {testApp}, "access_token": {tok}, "type": {"NONCE"}, "version": {"1.0.0"}}, CodeRejected},
		{"wrong version", url.Values{"app_id": {testApp}, "access_token": {tok}, "type": {"SIGN"}, "version": {"1.0"}}, CodeRejected},
		{"unknown app", url.Values{"app_id": {"TIDA9999"}, "access_token": {tok}, "type": {"SIGN"}, "version": {"1.0.0"}}, CodeUnknownApp},
	}
	for _, tt := range tests {
		a := get(t, context.Background(), s.URL+"/api/oauth2/api_ticket?"+tt.params.Encode())
		if got := a.str("code"); got != tt.code {
			t.Errorf("api_ticket(%s) code = %s, want %s", tt.name, got, tt.code)
		}
	}
	if n := s.TicketMints(testApp); n != 1 {
		t.Errorf("TicketMints = %d, want 1", n)
	}
}

func TestNumberShapes(t *testing.T) {
	t.Parallel()
	s := setup(t, Options{ExpireInAsString: true, CodeAsNumber: true}, nil)
	a := get(t, context.Background(), tokenURL(s.URL, testApp, testSecret))
	for _, want := range []string{`"code":0,`, `"expire_in":"7200"`} {
		if !strings.Contains(string(a.raw), want) {
			t.Errorf("access_token answer lacks %s", want)
		}
	}
	a = get(t, context.Background(), ticketURL(s.URL, testApp, a.str("access_token")))
	for _, want := range []string{`"code":0,`, `"expire_in":"3600"`} {
		if !strings.Contains(string(a.raw), want) {
			t.Errorf("api_ticket answer lacks %s", want)
		}
	}
}

// TestRotationWindow follows the provider's rule: a new token leaves the
// old one and its tickets valid for the overlap only.
func TestRotationWindow(t *testing.T) {
	t.Parallel()
	clk := newClock()
	s := setup(t, Options{Overlap: 60 * time.Second}, clk)
	tok1 := mintToken(t, s)
	tk1, _ := mintTicket(t, s, tok1)
	clk.Advance(20 * time.Minute)

	tok2 := mintToken(t, s) // the overlap of tok1 starts now
	tk2, _ := mintTicket(t, s, tok2)
	clk.Advance(30 * time.Second)

	// Inside the overlap the old token still mints, but only for what is
	// left of its life, and the old ticket still signs.
	tk1b, expireIn := mintTicket(t, s, tok1)
	if expireIn != "30" {
		t.Errorf("ticket of a superseded token expire_in = %s, want 30", expireIn)
	}
	for _, tk := range []string{tk1, tk1b, tk2} {
		if got := syncOnce(t, s, tk, "ord1", "0").str("code"); got != "0" {
			t.Errorf("sync inside the overlap code = %s, want 0", got)
		}
	}
	clk.Advance(29 * time.Second)
	if got := syncOnce(t, s, tk1, "ord1", "0").str("code"); got != "0" {
		t.Errorf("sync 1 s before the overlap ends code = %s, want 0", got)
	}
	if n := s.RejectedWithDeadTicket(testApp); n != 0 {
		t.Errorf("RejectedWithDeadTicket = %d, want 0", n)
	}

	clk.Advance(time.Second) // the overlap ends
	for _, tk := range []string{tk1, tk1b} {
		if got := syncOnce(t, s, tk, "ord1", "0").str("code"); got != CodeRejected {
			t.Errorf("sync with an old ticket after the overlap code = %s, want %s", got, CodeRejected)
		}
	}
	if got := get(t, context.Background(), ticketURL(s.URL, testApp, tok1)).str("code"); got != CodeRejected {
		t.Errorf("api_ticket with an old token after the overlap code = %s, want %s", got, CodeRejected)
	}
	if got := syncOnce(t, s, tk2, "ord1", "0").str("code"); got != "0" {
		t.Errorf("sync with the new ticket code = %s, want 0", got)
	}
	if n := s.RejectedWithDeadTicket(testApp); n != 2 {
		t.Errorf("RejectedWithDeadTicket = %d, want 2", n)
	}
	if n, m := s.TokenMints(testApp), s.TicketMints(testApp); n != 2 || m != 3 {
		t.Errorf("TokenMints, TicketMints = %d, %d, want 2, 3", n, m)
	}
	var dead int
	for _, r := range s.Requests() {
		if r.DeadTicket {
			dead++
			if r.Signed || r.Code != CodeRejected {
				t.Errorf("dead-ticket request recorded as Signed %v, Code %s; want false, %s", r.Signed, r.Code, CodeRejected)
			}
		}
	}
	if dead != 2 {
		t.Errorf("Requests with DeadTicket = %d, want 2", dead)
	}
}

func TestExpiry(t *testing.T) {
	t.Parallel()
	clk := newClock()
	s := setup(t, Options{TokenTTL: 2 * time.Hour, TicketTTL: time.Hour}, clk)
	tok := mintToken(t, s)
	tk, _ := mintTicket(t, s, tok)
	clk.Advance(time.Hour - time.Second)
	if got := syncOnce(t, s, tk, "ord1", "").str("code"); got != "0" {
		t.Errorf("sync before the ticket expires code = %s, want 0", got)
	}
	clk.Advance(time.Second)
	if got := syncOnce(t, s, tk, "ord1", "").str("code"); got != CodeRejected {
		t.Errorf("sync after the ticket expired code = %s, want %s", got, CodeRejected)
	}
	// A ticket minted late in the token's life ends with the token.
	clk.Advance(30 * time.Minute)
	tk2, expireIn := mintTicket(t, s, tok)
	if expireIn != "1800" {
		t.Errorf("late ticket expire_in = %s, want 1800", expireIn)
	}
	clk.Advance(30 * time.Minute)
	if got := syncOnce(t, s, tk2, "ord1", "").str("code"); got != CodeRejected {
		t.Errorf("sync after the token expired code = %s, want %s", got, CodeRejected)
	}
	if got := get(t, context.Background(), ticketURL(s.URL, testApp, tok)).str("code"); got != CodeRejected {
		t.Errorf("api_ticket with an expired token code = %s, want %s", got, CodeRejected)
	}
	if n := s.RejectedWithDeadTicket(testApp); n != 2 {
		t.Errorf("RejectedWithDeadTicket = %d, want 2", n)
	}
}

func TestKillCredentials(t *testing.T) {
	t.Parallel()
	clk := newClock()
	s := setup(t, Options{}, clk)
	tok := mintToken(t, s)
	tk, _ := mintTicket(t, s, tok)
	s.KillCredentials(testApp)
	if got := syncOnce(t, s, tk, "ord1", "").str("code"); got != CodeRejected {
		t.Errorf("sync after KillCredentials code = %s, want %s", got, CodeRejected)
	}
	if got := get(t, context.Background(), ticketURL(s.URL, testApp, tok)).str("code"); got != CodeRejected {
		t.Errorf("api_ticket after KillCredentials code = %s, want %s", got, CodeRejected)
	}
	if n := s.RejectedWithDeadTicket(testApp); n != 1 {
		t.Errorf("RejectedWithDeadTicket = %d, want 1", n)
	}
	if got := syncOnce(t, s, credentials(t, s), "ord1", "").str("code"); got != "0" {
		t.Errorf("sync with a new pair after KillCredentials code = %s, want 0", got)
	}
}

func TestSignatureRejected(t *testing.T) {
	t.Parallel()
	s := setup(t, Options{}, nil)
	tk := credentials(t, s)
	const nonce = "kHoSxvLZGxSoFsjxlbzEoUzh5PAnTU7T"
	params := func(app, order, version, nonce, sign string) url.Values {
		return url.Values{"app_id": {app}, "order_no": {order}, "version": {version}, "nonce": {nonce}, "sign": {sign}}
	}
	good := idasc.Sign(testApp, "ord1", "1.0.0", tk, nonce)
	tests := []struct {
		name   string
		params url.Values
		code   string
	}{
		{"good", params(testApp, "ord1", "1.0.0", nonce, good), "0"},
		{"wrong sign", params(testApp, "ord1", "1.0.0", nonce, idasc.Sign(testApp, "ord1", "1.0.0", tk+"x", nonce)), CodeRejected},
		{"lower-case sign", params(testApp, "ord1", "1.0.0", nonce, strings.ToLower(good)), CodeRejected},
		{"no sign", params(testApp, "ord1", "1.0.0", nonce, ""), CodeRejected},
		{"sign of another order", params(testApp, "ord2", "1.0.0", nonce, good), CodeRejected},
		{"wrong version", params(testApp, "ord1", "1.0.1", nonce, idasc.Sign(testApp, "ord1", "1.0.1", tk, nonce)), CodeRejected},
		{"short nonce", params(testApp, "ord1", "1.0.0", nonce[1:], idasc.Sign(testApp, "ord1", "1.0.0", tk, nonce[1:])), CodeRejected},
		{"nonce with a symbol", params(testApp, "ord1", "1.0.0", nonce[1:]+"-", idasc.Sign(testApp, "ord1", "1.0.0", tk, nonce[1:]+"-")), CodeRejected},
		{"order too long", params(testApp, strings.Repeat("o", 33), "1.0.0", nonce, idasc.Sign(testApp, strings.Repeat("o", 33), "1.0.0", tk, nonce)), CodeRejected},
		{"order with a dot", params(testApp, "ord.1", "1.0.0", nonce, idasc.Sign(testApp, "ord.1", "1.0.0", tk, nonce)), CodeRejected},
		{"unknown app", params("TIDA9999", "ord1", "1.0.0", nonce, idasc.Sign("TIDA9999", "ord1", "1.0.0", tk, nonce)), CodeUnknownApp},
	}
	for _, tt := range tests {
		a := get(t, context.Background(), s.URL+"/api/server/sync?"+tt.params.Encode())
		if got := a.str("code"); got != tt.code {
			t.Errorf("sync(%s) code = %s, want %s", tt.name, got, tt.code)
		}
		if tt.code != "0" && a.result("orderNo") != "<missing>" {
			t.Errorf("sync(%s) answered a result", tt.name)
		}
	}
	if n := s.RejectedWithDeadTicket(testApp); n != 0 {
		t.Errorf("RejectedWithDeadTicket = %d, want 0", n)
	}
	var signed int
	for _, r := range s.Requests() {
		if r.Path == "/api/server/sync" && r.Signed {
			signed++
		}
	}
	if signed != 1 {
		t.Errorf("Requests with Signed = %d, want 1", signed)
	}
}

func TestRouting(t *testing.T) {
	t.Parallel()
	s := setup(t, Options{}, nil)
	tests := []struct {
		method, path string
		status       int
	}{
		{http.MethodGet, "/api/server/nope", http.StatusNotFound},
		{http.MethodPost, "/api/server/sync", http.StatusMethodNotAllowed},
		{http.MethodPost, "/api/oauth2/access_token", http.StatusMethodNotAllowed},
	}
	for _, tt := range tests {
		req, err := http.NewRequest(tt.method, s.URL+tt.path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", tt.method, tt.path, err)
		}
		resp.Body.Close()
		if resp.StatusCode != tt.status {
			t.Errorf("%s %s status = %d, want %d", tt.method, tt.path, resp.StatusCode, tt.status)
		}
	}
}

// TestConcurrent has many clients rotate and query at once; run with -race.
func TestConcurrent(t *testing.T) {
	t.Parallel()
	s := setup(t, Options{DefaultScenario: Scenario{PhotoSize: 1 << 10, VideoSize: 4 << 10}, EvidenceDelay: -1}, nil)
	tk := credentials(t, s)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			order := "o" + string(rune('a'+g)) + "-nr1"
			for i := range 10 {
				a, err := tryGet(context.Background(), syncURL(s.URL, testApp, order, tk, "1"))
				if err != nil {
					t.Error(err)
					return
				}
				want := "0"
				if i == 0 {
					want = idasc.CodeNotReady
				}
				if got := a.str("code"); got != want {
					t.Errorf("sync %d of %s code = %s, want %s", i, order, got, want)
				}
				if got := a.result("video"); want == "0" && len(got) != ((4<<10)+2)/3*4 {
					t.Errorf("sync %d of %s video has %d characters, want the base64 of 4 KiB", i, order, len(got))
				}
			}
			if _, err := tryGet(context.Background(), tokenURL(s.URL, testApp, testSecret)); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if n := s.TokenMints(testApp); n != 9 {
		t.Errorf("TokenMints = %d, want 9", n)
	}
	if n := len(s.Requests()); n != 8*10+2+8 {
		t.Errorf("len(Requests()) = %d, want %d", n, 8*10+2+8)
	}
}

func TestMaxRecords(t *testing.T) {
	t.Parallel()
	s := setup(t, Options{MaxRecords: 8}, nil)
	for range 20 {
		mintToken(t, s)
	}
	if n := len(s.Requests()); n > 8 {
		t.Errorf("len(Requests()) = %d, want at most 8", n)
	}
	if n := s.TokenMints(testApp); n != 20 {
		t.Errorf("TokenMints = %d, want 20", n)
	}
}
