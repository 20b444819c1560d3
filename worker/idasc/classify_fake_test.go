package idasc_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/facesync/facesync/worker/idasc"
	"github.com/facesync/facesync/worker/idasc/idasctest"
)

// call is one way of asking the provider for an order's answer.
type call struct {
	name, short string // short goes into order numbers
	do          func(s fakeSetup, orderNo string) (*idasc.Result, error)
}

var syncCalls = []call{
	{"Sync", "s", func(s fakeSetup, orderNo string) (*idasc.Result, error) {
		return s.client.Sync(context.Background(), s.req(orderNo))
	}},
	{"SyncEvidence", "ev", func(s fakeSetup, orderNo string) (*idasc.Result, error) {
		return s.client.SyncEvidence(context.Background(), s.req(orderNo), "1", 4<<20,
			func(string, io.Reader) error { return nil })
	}},
}

// checkCodeAnswer checks an answer with a provider code: its class, and the
// code and message kept on the *Error and the Result.
func checkCodeAnswer(t *testing.T, what string, res *idasc.Result, err error, code string, want idasc.Class) {
	t.Helper()
	if got := idasc.ClassOf(err); got != want {
		t.Fatalf("%s error = %v, class %v, want %v", what, err, got, want)
	}
	if want == idasc.ClassNone {
		if res == nil || res.Code != code {
			t.Fatalf("%s = %+v, want code %s", what, res, code)
		}
		return
	}
	var e *idasc.Error
	if !errors.As(err, &e) || e.Code != code || e.Msg == "" {
		t.Fatalf("%s error = %#v, want an *Error with code %s and the provider's msg", what, err, code)
	}
	if res == nil || res.Code != code || res.Msg != e.Msg {
		t.Errorf("%s Result = %+v, want code %s and msg %q", what, res, code, e.Msg)
	}
	if !idasc.HasAnswer(err) {
		t.Errorf("%s HasAnswer() = false, want true for an answer with a code", what)
	}
	if got := idasc.IsProviderNetwork(err); got != (code == idasc.CodeProviderNetwork) {
		t.Errorf("%s IsProviderNetwork() = %v, want %v", what, got, !got)
	}
}

// TestClassifySyncCodes answers every code of the classification table,
// and codes of no row, through Sync and SyncEvidence over HTTP: as the
// decision (result object and all) and as a scripted answer once before a
// pass.
func TestClassifySyncCodes(t *testing.T) {
	t.Parallel()
	s := newFakeSetup(t, idasctest.Options{})
	type row struct {
		code  string
		class idasc.Class
	}
	var rows []row
	for _, r := range contractClasses {
		for _, c := range r.codes {
			rows = append(rows, row{c, r.class})
		}
	}
	rows = append(rows, row{"66660015", idasc.ClassFailed}, row{"12345", idasc.ClassFailed})
	for _, c := range syncCalls {
		for _, r := range rows {
			t.Run(c.name+"/"+r.code, func(t *testing.T) {
				t.Parallel()
				orderNo := c.short + "-c" + r.code
				res, err := c.do(s, orderNo)
				checkCodeAnswer(t, c.name+"("+orderNo+")", res, err, r.code, r.class)
				t.Logf("%s %s: code %s -> class %v", c.name, orderNo, r.code, idasc.ClassOf(err))

				orderNo += "x1"
				res, err = c.do(s, orderNo)
				checkCodeAnswer(t, c.name+"("+orderNo+") first", res, err, r.code, r.class)
				res, err = c.do(s, orderNo)
				checkCodeAnswer(t, c.name+"("+orderNo+") second", res, err, idasc.CodeOK, idasc.ClassNone)
			})
		}
	}
}

// TestClassifySyncTransport covers the rows of the table that are not
// codes: HTTP statuses, bodies cut short, invalid base64, time-outs and a
// provider that is gone.
func TestClassifySyncTransport(t *testing.T) {
	t.Parallel()
	s := newFakeSetup(t, idasctest.Options{}, idasc.WithTimeout(200*time.Millisecond), idasc.WithEvidenceTimeout(200*time.Millisecond))
	tests := []struct {
		orderNo string
		want    idasc.Class
		status  int         // HTTP status of the first answer; 0: no answer
		then    idasc.Class // class of the second call
	}{
		{"t-h429x1", idasc.ClassThrottled, 429, idasc.ClassNone},
		{"t-h404", idasc.ClassHTTP4xx, 404, idasc.ClassHTTP4xx},
		{"t-h400x1", idasc.ClassHTTP4xx, 400, idasc.ClassNone},
		{"t-e500", idasc.ClassTransient, 500, idasc.ClassNone},
		{"t-h503x1", idasc.ClassTransient, 503, idasc.ClassNone},
		{"t-tr1", idasc.ClassTransient, 0, idasc.ClassNone},
		{"t-lat5s", idasc.ClassTransient, 0, idasc.ClassTransient},
	}
	for _, c := range syncCalls {
		for _, tt := range tests {
			t.Run(c.name+"/"+tt.orderNo, func(t *testing.T) {
				t.Parallel()
				orderNo := tt.orderNo + "-" + c.short
				for i, want := range []idasc.Class{tt.want, tt.then} {
					_, err := c.do(s, orderNo)
					if got := idasc.ClassOf(err); got != want {
						t.Fatalf("%s(%s) call %d error = %v, class %v, want %v", c.name, orderNo, i+1, err, got, want)
					}
					var e *idasc.Error
					if i == 0 && tt.status != 0 && (!errors.As(err, &e) || e.HTTPStatus != tt.status) {
						t.Errorf("%s(%s) error = %v, want HTTP status %d kept", c.name, orderNo, err, tt.status)
					}
					if got := idasc.HasAnswer(err); i == 0 && got != (tt.status != 0) {
						t.Errorf("%s(%s) HasAnswer(%v) = %v, want %v", c.name, orderNo, err, got, !got)
					}
				}
			})
		}
	}
	t.Run("SyncEvidence/bad64", func(t *testing.T) {
		t.Parallel()
		_, err := syncCalls[1].do(s, "t-bad64")
		if !idasc.IsTransient(err) {
			t.Errorf("SyncEvidence(t-bad64) error = %v, want transient", err)
		}
	})
	t.Run("gone", func(t *testing.T) {
		t.Parallel()
		gone := newFakeSetup(t, idasctest.Options{})
		gone.srv.Close()
		for _, c := range syncCalls {
			if _, err := c.do(gone, "t-gone"); !idasc.IsTransient(err) || idasc.HasAnswer(err) {
				t.Errorf("%s from a closed provider error = %v, want transient without an answer", c.name, err)
			}
		}
	})
}

// TestClassifyCredentialCalls answers the access token and ticket calls
// with every code of the table and the HTTP rows: they use the same
// classification as sync.
func TestClassifyCredentialCalls(t *testing.T) {
	t.Parallel()
	s := newFakeSetup(t, idasctest.Options{})
	tok, err := s.client.AccessToken(context.Background(), testApp, testSecret)
	if err != nil {
		t.Fatal(err)
	}
	type row struct {
		step  idasctest.Step
		class idasc.Class
	}
	var rows []row
	for _, r := range contractClasses {
		if r.class == idasc.ClassNone {
			continue
		}
		for _, c := range r.codes {
			rows = append(rows, row{idasctest.Step{Code: c, Times: 1}, r.class})
		}
	}
	rows = append(rows,
		row{idasctest.Step{Code: "66660015", Times: 1}, idasc.ClassFailed},
		row{idasctest.Step{HTTPStatus: http.StatusTooManyRequests, Times: 1}, idasc.ClassThrottled},
		row{idasctest.Step{HTTPStatus: http.StatusForbidden, Times: 1}, idasc.ClassHTTP4xx},
		row{idasctest.Step{HTTPStatus: http.StatusBadGateway, Times: 1}, idasc.ClassTransient},
	)
	ctx := context.Background()
	// One script at a time: the scripts are the app's, not a call's.
	for _, r := range rows {
		s.srv.SetTokenScript(testApp, r.step)
		_, err := s.client.AccessToken(ctx, testApp, testSecret)
		checkCredentialAnswer(t, "AccessToken()", err, r.step, r.class)
		s.srv.SetTicketScript(testApp, r.step)
		_, err = s.client.SignTicket(ctx, testApp, tok.Value)
		checkCredentialAnswer(t, "SignTicket()", err, r.step, r.class)
	}
	if _, err := s.client.SignTicket(ctx, testApp, tok.Value); err != nil {
		t.Errorf("SignTicket() after the scripts = %v, want a ticket", err)
	}
}

func checkCredentialAnswer(t *testing.T, what string, err error, st idasctest.Step, want idasc.Class) {
	t.Helper()
	assertRedacted(t, what, err)
	var e *idasc.Error
	if !errors.As(err, &e) || e.Class != want {
		t.Errorf("%s answered %+v: error = %v, want class %v", what, st, err, want)
		return
	}
	if e.Code != st.Code || e.HTTPStatus != st.HTTPStatus || (st.Code != "" && e.Msg == "") {
		t.Errorf("%s answered %+v: error = %#v, want the code, msg and status kept", what, st, e)
	}
}

// TestClassifyCategories answers every code of every category row as the
// decision over HTTP and checks it is failed (66660021: transient, then
// failed after the wait) with the row's category.
func TestClassifyCategories(t *testing.T) {
	t.Parallel()
	s := newFakeSetup(t, idasctest.Options{})
	for _, row := range contractCategories {
		t.Run(row.category, func(t *testing.T) {
			t.Parallel()
			for _, code := range row.codes {
				orderNo := "cat-c" + code
				res, err := s.client.Sync(context.Background(), s.req(orderNo))
				want := idasc.ClassFailed
				if code == idasc.CodeProviderNetwork {
					want = idasc.ClassTransient
				}
				checkCodeAnswer(t, "Sync("+orderNo+")", res, err, code, want)
				if got := idasc.Category(res.Code); got != row.category {
					t.Errorf("Category(%s) of the answer to %s = %q, want %q", res.Code, orderNo, got, row.category)
				}
			}
			t.Logf("category %s: %d codes answered failed over HTTP", row.category, len(row.codes))
		})
	}
	res, err := s.client.Sync(context.Background(), s.req("cat-c12345"))
	checkCodeAnswer(t, "Sync(cat-c12345)", res, err, "12345", idasc.ClassFailed)
	if got := idasc.Category(res.Code); got != idasc.CategoryOther {
		t.Errorf("Category(12345) = %q, want other", got)
	}
}
