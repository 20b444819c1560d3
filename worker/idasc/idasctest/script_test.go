package idasctest

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/facesync/facesync/worker/idasc"
)

// outcomeOf is the HTTP status and the code (or "-" for a non-JSON answer)
// of an answer, and whether it carried a result object.
func outcomeOf(a answer) (int, string, bool) {
	if a.m == nil {
		return a.status, "-", false
	}
	_, hasResult := a.m["result"]
	return a.status, a.str("code"), hasResult
}

func TestScriptedSequences(t *testing.T) {
	t.Parallel()
	type want struct {
		status int
		code   string
		result bool
	}
	tests := []struct {
		orderNo string
		want    []want
	}{
		{"s1-c400504x2", []want{{200, "400504", false}, {200, "400504", false}, {200, "0", true}, {200, "0", true}}},
		{"s2-c2008", []want{{200, "2008", true}, {200, "2008", true}, {200, "2008", true}}},
		{"s3-h429x2", []want{{429, "-", false}, {429, "-", false}, {200, "0", true}}},
		// Script first, then the other stages in their order.
		{"4-c400506x1-c66660021x1-e500-nr1", []want{
			{200, "400506", false}, {200, "66660021", false}, {500, "-", false},
			{200, idasc.CodeNotReady, false}, {200, "0", true}, {200, "0", true}}},
	}
	s := setup(t, Options{}, nil)
	tk := credentials(t, s)
	for _, tt := range tests {
		t.Run(tt.orderNo, func(t *testing.T) {
			t.Parallel()
			for i, w := range tt.want {
				a := syncOnce(t, s, tk, tt.orderNo, "0")
				status, code, result := outcomeOf(a)
				if status != w.status || code != w.code || result != w.result {
					t.Fatalf("sync %d of %s = HTTP %d code %s result %v, want HTTP %d code %s result %v",
						i+1, tt.orderNo, status, code, result, w.status, w.code, w.result)
				}
				if code != "-" && a.str("msg") == "" {
					t.Errorf("sync %d of %s has an empty msg", i+1, tt.orderNo)
				}
			}
		})
	}

	// A Script set by SetScenario, with a message of its own, ending in a
	// step that lasts.
	s.SetScenario(testApp, "set", Scenario{Script: []Step{{Code: "400601", Msg: "body", Times: 1}, {Code: "400502"}}})
	for i, w := range []string{"400601", "400502", "400502", "400502"} {
		a := syncOnce(t, s, tk, "set", "0")
		if got := a.str("code"); got != w {
			t.Fatalf("sync %d of set code = %s, want %s", i+1, got, w)
		}
		if i == 0 && a.str("msg") != "body" {
			t.Errorf("sync 1 of set msg = %q, want %q", a.str("msg"), "body")
		}
	}
}

func TestThrottleWindow(t *testing.T) {
	t.Parallel()
	clk := newClock()
	s := setup(t, Options{Apps: map[string]string{testApp: testSecret, "TIDA0002": "other"}}, clk)
	tk := credentials(t, s)
	s.Throttle(testApp, clk.Now().Add(5*time.Second))

	// Every sync call of the app is throttled, signed or not, whatever the
	// order's scenario, and consumes none of it.
	for i, u := range []string{
		syncURL(s.URL, testApp, "w1-nr1", tk, "0"),
		syncURL(s.URL, testApp, "w1-nr1", tk, "1"),
		syncURL(s.URL, testApp, "w2-c2008", "not-the-ticket", "0"),
	} {
		if got := get(t, context.Background(), u).str("code"); got != idasc.CodeThrottled {
			t.Fatalf("sync %d in the window code = %s, want %s", i+1, got, idasc.CodeThrottled)
		}
	}
	// Other apps and credential calls are not throttled.
	if got := get(t, context.Background(), tokenURL(s.URL, "TIDA0002", "other")).str("code"); got != "0" {
		t.Errorf("access_token of another app in the window code = %s, want 0", got)
	}
	clk.Advance(4999 * time.Millisecond)
	if got := syncOnce(t, s, tk, "w3", "0").str("code"); got != idasc.CodeThrottled {
		t.Errorf("sync just before the window ends code = %s, want %s", got, idasc.CodeThrottled)
	}
	if n := s.ThrottledCalls(testApp); n != 4 {
		t.Errorf("ThrottledCalls() = %d, want 4", n)
	}
	clk.Advance(time.Millisecond)
	for i, want := range []string{idasc.CodeNotReady, "0"} {
		if got := syncOnce(t, s, tk, "w1-nr1", "0").str("code"); got != want {
			t.Errorf("sync %d of w1-nr1 after the window code = %s, want %s", i+1, got, want)
		}
	}
	if n := s.ThrottledCalls(testApp); n != 4 {
		t.Errorf("ThrottledCalls() after the window = %d, want 4", n)
	}
	if n := s.ThrottledCalls("TIDA0002"); n != 0 {
		t.Errorf("ThrottledCalls(other app) = %d, want 0", n)
	}
}

func TestCredentialScripts(t *testing.T) {
	t.Parallel()
	s := setup(t, Options{}, nil)
	s.SetTokenScript(testApp, Step{Code: "400504", Times: 1}, Step{HTTPStatus: http.StatusTooManyRequests, Times: 1}, Step{Code: "400103", Times: 1})
	ctx := context.Background()
	for i, want := range []struct {
		status int
		code   string
	}{{200, "400504"}, {429, "-"}, {200, "400103"}, {200, "0"}} {
		a := get(t, ctx, tokenURL(s.URL, testApp, testSecret))
		if status, code, _ := outcomeOf(a); status != want.status || code != want.code {
			t.Fatalf("access_token %d = HTTP %d code %s, want HTTP %d code %s", i+1, status, code, want.status, want.code)
		}
	}
	if n := s.TokenMints(testApp); n != 1 {
		t.Errorf("TokenMints() = %d, want 1 (scripted answers mint nothing)", n)
	}
	tok := mintToken(t, s)
	s.SetTicketScript(testApp, Step{Code: "66660002"})
	for i := range 3 {
		if got := get(t, ctx, ticketURL(s.URL, testApp, tok)).str("code"); got != "66660002" {
			t.Fatalf("api_ticket %d code = %s, want 66660002 every time", i+1, got)
		}
	}
	s.SetTicketScript(testApp)
	if _, exp := mintTicket(t, s, tok); exp == "" {
		t.Error("api_ticket after the script was cleared has no expire_in")
	}
}

// TestThrottleFromOrderNumber opens an app's throttling window from the
// command line: the first request of an order with "thr5s" throttles every
// order of the app for 5 s, once.
func TestThrottleFromOrderNumber(t *testing.T) {
	t.Parallel()
	clk := newClock()
	s := setup(t, Options{}, clk)
	tk := credentials(t, s)
	for i, o := range []string{"t1-thr5s", "t2", "t1-thr5s"} {
		if got := syncOnce(t, s, tk, o, "0").str("code"); got != idasc.CodeThrottled {
			t.Fatalf("sync %d (%s) in the window code = %s, want %s", i+1, o, got, idasc.CodeThrottled)
		}
		clk.Advance(2 * time.Second)
	}
	// 6 s later: the window is over and the order's repeat opened no other.
	for _, o := range []string{"t1-thr5s", "t2"} {
		if got := syncOnce(t, s, tk, o, "0").str("code"); got != "0" {
			t.Errorf("sync of %s after the window code = %s, want 0", o, got)
		}
	}
	if n := s.ThrottledCalls(testApp); n != 3 {
		t.Errorf("ThrottledCalls() = %d, want 3", n)
	}
}
