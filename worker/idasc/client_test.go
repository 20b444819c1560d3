package idasc_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/facesync/facesync/worker/idasc"
)

const (
	testApp    = "TIDA0001"
	testOrder  = "ord0001"
	testSecret = "appSecretValue0123456789abcdefgh"
	testToken  = "accessTokenValue0123456789abcdef"
	testTicket = "signTicketValue0123456789abcdefg"
)

var syncReq = idasc.SyncRequest{AppID: testApp, OrderNo: testOrder, Ticket: testTicket}

// newClient starts a provider double serving h and returns a Client for it.
// The base URL is given with a trailing slash, as operators may write it.
func newClient(t *testing.T, h http.HandlerFunc, opts ...idasc.Option) *idasc.Client {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return idasc.New(srv.URL+"/", opts...)
}

// reply answers every request with status and body.
func reply(status int, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}
}

func TestSyncSendsSignedRequest(t *testing.T) {
	t.Parallel()
	c := newClient(t, func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		if r.Method != http.MethodGet || r.URL.Path != "/api/server/sync" {
			t.Errorf("request %s %s, want GET /api/server/sync", r.Method, r.URL.Path)
		}
		for k, want := range map[string]string{"app_id": testApp, "order_no": testOrder, "version": "1.0.0"} {
			if got := q.Get(k); got != want {
				t.Errorf("query %s = %q, want %q", k, got, want)
			}
		}
		if q.Has("get_file") {
			t.Errorf("query has get_file = %q, want none", q.Get("get_file"))
		}
		if q.Has("ticket") {
			t.Error("query carries the ticket")
		}
		nonce := q.Get("nonce")
		if !regexp.MustCompile(`^[A-Za-z0-9]{32}$`).MatchString(nonce) {
			t.Errorf("query nonce = %q, want 32 letters and digits", nonce)
		}
		if got, want := q.Get("sign"), idasc.Sign(testApp, testOrder, "1.0.0", testTicket, nonce); got != want {
			t.Errorf("query sign = %q, want %q", got, want)
		}
		reply(http.StatusOK, `{"code":"0","msg":"ok","result":{"orderNo":"ord0001"}}`)(w, r)
	})
	res, err := c.Sync(context.Background(), syncReq)
	if err != nil {
		t.Fatalf("Sync() error = %v", err)
	}
	if res.Code != "0" || res.OrderNo != testOrder {
		t.Errorf("Sync() = %+v, want code 0 for %s", res, testOrder)
	}
}

func TestSyncClasses(t *testing.T) {
	t.Parallel()
	const passed = `{"code":"0","msg":"请求成功","bizSeqNo":"18081020001015300215034200859792",` +
		`"result":{"bizSeqNo":"18081020001015300215034200859792","transactionTime":"20180810150342",` +
		`"orderNo":"ord0001","idNo":"110101199001011234","idType":"01","name":"张三",` +
		`"liveRate":"100","similarity":"95.0","occurredTime":"20180810150152","success":false},` +
		`"transactionTime":"20180810150342","app_id":"TIDA0001","order_no":"ord0001"}`
	passedResult := &idasc.Result{
		Code: "0", Msg: "请求成功", OrderNo: "ord0001",
		BizSeqNo: "18081020001015300215034200859792", TransactionTime: "20180810150342",
		OccurredTime: "20180810150152", LiveRate: "100", Similarity: "95.0",
		IDNo: "110101199001011234", IDType: "01", Name: "张三",
	}
	tests := []struct {
		name       string
		status     int
		body       string
		wantClass  idasc.Class
		wantHTTP   int
		wantCode   string // the *Error's Code
		wantMsg    string // the *Error's Msg
		wantResult *idasc.Result
	}{
		{name: "passed", status: 200, body: passed, wantClass: idasc.ClassNone, wantResult: passedResult},
		{
			name: "passed despite success false, code as number", status: 200,
			body:       `{"code":0,"msg":"ok","result":{"orderNo":"ord0001","success":false,"liveRate":100,"similarity":95.0}}`,
			wantClass:  idasc.ClassNone,
			wantResult: &idasc.Result{Code: "0", Msg: "ok", OrderNo: "ord0001", LiveRate: "100", Similarity: "95.0"},
		},
		{
			name: "result before code", status: 200,
			body:       `{"result":{"orderNo":"ord0001","bizSeqNo":"B1"},"msg":"ok","code":"0"}`,
			wantClass:  idasc.ClassNone,
			wantResult: &idasc.Result{Code: "0", Msg: "ok", OrderNo: "ord0001", BizSeqNo: "B1"},
		},
		{
			name: "escaped slashes and line breaks", status: 200,
			body:       "{\r\n\"code\" : \"0\",\n\"msg\":\"ok\\/done\",\"result\":{\"orderNo\":\"ord\\/1\",\"photo\":\"/9j\\/4AAQ\\nSkZJRg==\"}\n}",
			wantClass:  idasc.ClassNone,
			wantResult: &idasc.Result{Code: "0", Msg: "ok/done", OrderNo: "ord/1"},
		},
		{
			name: "top-level fallback", status: 200,
			body:       `{"code":"0","bizSeqNo":"TOPSEQ","transactionTime":"20260101000000","result":{"orderNo":"ord0001"}}`,
			wantClass:  idasc.ClassNone,
			wantResult: &idasc.Result{Code: "0", OrderNo: "ord0001", BizSeqNo: "TOPSEQ", TransactionTime: "20260101000000"},
		},
		{
			name: "nulls", status: 200,
			body:       `{"code":"0","msg":null,"bizSeqNo":"TOP","result":{"bizSeqNo":null,"orderNo":null,"name":"null"}}`,
			wantClass:  idasc.ClassNone,
			wantResult: &idasc.Result{Code: "0", BizSeqNo: "TOP"},
		},
		{
			name: "not ready", status: 200,
			body:       `{"code":"66660011","msg":"无此ID的刷脸结果","bizSeqNo":"B2","transactionTime":"T2","result":null}`,
			wantClass:  idasc.ClassNotReady,
			wantCode:   "66660011",
			wantMsg:    "无此ID的刷脸结果",
			wantResult: &idasc.Result{Code: "66660011", Msg: "无此ID的刷脸结果", BizSeqNo: "B2", TransactionTime: "T2"},
		},
		{
			name: "not ready as number", status: 200,
			body:       `{"code":66660011}`,
			wantClass:  idasc.ClassNotReady,
			wantCode:   "66660011",
			wantResult: &idasc.Result{Code: "66660011"},
		},
		{
			name: "rejected", status: 200,
			body:       `{"code":"400101","msg":"不合法请求"}`,
			wantClass:  idasc.ClassRejected,
			wantCode:   "400101",
			wantMsg:    "不合法请求",
			wantResult: &idasc.Result{Code: "400101", Msg: "不合法请求"},
		},
		{
			name: "failed keeps result", status: 200,
			body: `{"code":"66660015","msg":"姓名和身份证不一致","bizSeqNo":"B3",` +
				`"result":{"orderNo":"ord0001","liveRate":"99","similarity":"12.5","occurredTime":"20260101000001","success":true}}`,
			wantClass: idasc.ClassFailed,
			wantCode:  "66660015",
			wantMsg:   "姓名和身份证不一致",
			wantResult: &idasc.Result{
				Code: "66660015", Msg: "姓名和身份证不一致", OrderNo: "ord0001", BizSeqNo: "B3",
				LiveRate: "99", Similarity: "12.5", OccurredTime: "20260101000001",
			},
		},
		{name: "http 500", status: 500, body: `{"code":"0"}`, wantClass: idasc.ClassTransient, wantHTTP: 500},
		{name: "http 502", status: 502, body: `bad gateway`, wantClass: idasc.ClassTransient, wantHTTP: 502},
		{name: "http 429", status: 429, body: ``, wantClass: idasc.ClassThrottled, wantHTTP: 429},
		{name: "http 404", status: 404, body: `not found`, wantClass: idasc.ClassHTTP4xx, wantHTTP: 404},
		{name: "http 403", status: 403, body: ``, wantClass: idasc.ClassHTTP4xx, wantHTTP: 403},
		{name: "truncated", status: 200, body: passed[:len(passed)/2], wantClass: idasc.ClassTransient},
		{name: "malformed", status: 200, body: `{"code":"0",,}`, wantClass: idasc.ClassTransient},
		{name: "html", status: 200, body: `<html>busy</html>`, wantClass: idasc.ClassTransient},
		{name: "empty body", status: 200, body: ``, wantClass: idasc.ClassTransient},
		{name: "null", status: 200, body: `null`, wantClass: idasc.ClassTransient},
		{name: "array", status: 200, body: `[{"code":"0"}]`, wantClass: idasc.ClassTransient},
		{name: "no code", status: 200, body: `{"msg":"ok","result":{}}`, wantClass: idasc.ClassTransient},
		{name: "code as object", status: 200, body: `{"code":{"v":0}}`, wantClass: idasc.ClassTransient},
		{name: "code as word", status: 200, body: `{"code":"ok"}`, wantClass: idasc.ClassTransient},
		{name: "trailing garbage", status: 200, body: `{"code":"0"} {"code":"1"}`, wantClass: idasc.ClassTransient},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := newClient(t, reply(tt.status, tt.body))
			res, err := c.Sync(context.Background(), syncReq)
			if got := idasc.ClassOf(err); got != tt.wantClass {
				t.Fatalf("Sync() error = %v, class %v, want %v", err, got, tt.wantClass)
			}
			if tt.wantResult == nil {
				if res != nil {
					t.Errorf("Sync() = %+v, want nil", res)
				}
			} else if res == nil || *res != *tt.wantResult {
				t.Errorf("Sync() = %+v, want %+v", res, tt.wantResult)
			}
			if err == nil {
				return
			}
			var e *idasc.Error
			if !errors.As(err, &e) {
				t.Fatalf("Sync() error = %T, want *idasc.Error", err)
			}
			if e.Op != "sync" || e.HTTPStatus != tt.wantHTTP || e.Code != tt.wantCode || e.Msg != tt.wantMsg {
				t.Errorf("Sync() error = %+v, want op sync, http %d, code %q, msg %q", e, tt.wantHTTP, tt.wantCode, tt.wantMsg)
			}
		})
	}
}

func TestSyncBodyLimit(t *testing.T) {
	t.Parallel()
	const limit = 64
	body := `{"code":"0"}`
	exact := body + strings.Repeat(" ", limit-len(body))
	tests := []struct {
		name      string
		body      string
		wantClass idasc.Class
	}{
		{name: "at the limit", body: exact, wantClass: idasc.ClassNone},
		{name: "one byte over", body: exact + " ", wantClass: idasc.ClassTransient},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := newClient(t, reply(http.StatusOK, tt.body), idasc.WithMaxBodyBytes(limit))
			_, err := c.Sync(context.Background(), syncReq)
			if got := idasc.ClassOf(err); got != tt.wantClass {
				t.Errorf("Sync() with a %d-byte body, limit %d: error = %v, want class %v", len(tt.body), limit, err, tt.wantClass)
			}
		})
	}
}

func TestSyncBodyOverDefaultLimit(t *testing.T) {
	t.Parallel()
	// A valid answer padded one byte past 1 MiB.
	body := `{"code":"0","msg":"` + strings.Repeat("x", idasc.DefaultMaxBodyBytes) + `"}`
	c := newClient(t, reply(http.StatusOK, body))
	res, err := c.Sync(context.Background(), syncReq)
	if !idasc.IsTransient(err) || res != nil {
		t.Errorf("Sync() with a %d-byte body = %v, %v, want nil and a transient error", len(body), res, err)
	}
}

func TestSyncEndlessBody(t *testing.T) {
	t.Parallel()
	// The body never ends: a client that read it whole would only stop at
	// its timeout, so an error other than a deadline shows it read no
	// further than the limit.
	chunk := []byte(strings.Repeat("0", 32<<10))
	c := newClient(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(`{"code":"0","msg":"`))
		for r.Context().Err() == nil {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	}, idasc.WithTimeout(time.Hour))
	_, err := c.Sync(context.Background(), syncReq)
	if !idasc.IsTransient(err) || errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Sync() from an endless body = %v, want a transient error before any deadline", err)
	}
}

func TestSyncTimeout(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		h    http.HandlerFunc
	}{
		{name: "no headers", h: func(w http.ResponseWriter, r *http.Request) {
			<-r.Context().Done()
		}},
		{name: "stalled body", h: func(w http.ResponseWriter, r *http.Request) {
			_, _ = w.Write([]byte(`{"code":"0","msg":`))
			w.(http.Flusher).Flush()
			<-r.Context().Done()
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := newClient(t, tt.h, idasc.WithTimeout(50*time.Millisecond))
			res, err := c.Sync(context.Background(), syncReq)
			if !idasc.IsTransient(err) || !errors.Is(err, context.DeadlineExceeded) || res != nil {
				t.Errorf("Sync() from a slow server = %v, %v, want nil and a transient deadline error", res, err)
			}
		})
	}
}

func TestSyncCanceled(t *testing.T) {
	t.Parallel()
	arrived := make(chan struct{})
	c := newClient(t, func(w http.ResponseWriter, r *http.Request) {
		close(arrived)
		<-r.Context().Done()
	})
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-arrived
		cancel()
	}()
	_, err := c.Sync(ctx, syncReq)
	if !errors.Is(err, context.Canceled) || !idasc.IsTransient(err) {
		t.Errorf("Sync() canceled by the caller = %v, want a transient error wrapping context.Canceled", err)
	}
}

func TestSyncInvalidRequest(t *testing.T) {
	t.Parallel()
	c := newClient(t, func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("request sent for an invalid SyncRequest: %s", r.URL.Path)
	})
	for _, req := range []idasc.SyncRequest{
		{OrderNo: testOrder, Ticket: testTicket},
		{AppID: testApp, Ticket: testTicket},
		{AppID: testApp, OrderNo: testOrder},
	} {
		if _, err := c.Sync(context.Background(), req); !errors.As(err, new(*idasc.Error)) || idasc.ClassOf(err) != idasc.ClassInvalid {
			t.Errorf("Sync(%+v) error = %v, want class invalid", req, err)
		}
	}
}

func TestAccessToken(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		status    int
		body      string
		want      idasc.Credential
		wantClass idasc.Class
		wantCode  string
	}{
		{
			name: "expire_in as number", status: 200,
			body: `{"code":"0","msg":"请求成功","transactionTime":"20151022043831","access_token":"tok1","expire_time":"20151022043831","expire_in":7200}`,
			want: idasc.Credential{Value: "tok1", ExpiresIn: 7200 * time.Second},
		},
		{
			name: "expire_in as string, code as number", status: 200,
			body: `{"expire_in":"7200","access_token":"tok2","code":0}`,
			want: idasc.Credential{Value: "tok2", ExpiresIn: 7200 * time.Second},
		},
		{name: "no token", status: 200, body: `{"code":"0","expire_in":7200}`, wantClass: idasc.ClassTransient, wantCode: "0"},
		{name: "empty token", status: 200, body: `{"code":"0","access_token":"","expire_in":7200}`, wantClass: idasc.ClassTransient, wantCode: "0"},
		{name: "no expire_in", status: 200, body: `{"code":"0","access_token":"tok"}`, wantClass: idasc.ClassTransient, wantCode: "0"},
		{name: "zero expire_in", status: 200, body: `{"code":"0","access_token":"tok","expire_in":0}`, wantClass: idasc.ClassTransient, wantCode: "0"},
		{name: "negative expire_in", status: 200, body: `{"code":"0","access_token":"tok","expire_in":"-5"}`, wantClass: idasc.ClassTransient, wantCode: "0"},
		{name: "fractional expire_in", status: 200, body: `{"code":"0","access_token":"tok","expire_in":7200.5}`, wantClass: idasc.ClassTransient, wantCode: "0"},
		{name: "huge expire_in", status: 200, body: `{"code":"0","access_token":"tok","expire_in":99999999999999}`, wantClass: idasc.ClassTransient, wantCode: "0"},
		{name: "expire_in as object", status: 200, body: `{"code":"0","access_token":"tok","expire_in":{}}`, wantClass: idasc.ClassTransient},
		{name: "refused", status: 200, body: `{"code":"400101","msg":"不合法请求"}`, wantClass: idasc.ClassRejected, wantCode: "400101"},
		{name: "other code", status: 200, body: `{"code":15,"msg":"app not found"}`, wantClass: idasc.ClassFailed, wantCode: "15"},
		{name: "malformed", status: 200, body: `{"code":"0","access_token":`, wantClass: idasc.ClassTransient},
		{name: "http 503", status: 503, body: ``, wantClass: idasc.ClassTransient},
		{name: "http 400", status: 400, body: ``, wantClass: idasc.ClassHTTP4xx},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := newClient(t, func(w http.ResponseWriter, r *http.Request) {
				q := r.URL.Query()
				want := url.Values{"app_id": {testApp}, "secret": {testSecret}, "grant_type": {"client_credential"}, "version": {"1.0.0"}}
				if r.URL.Path != "/api/oauth2/access_token" || q.Encode() != want.Encode() {
					t.Errorf("request %s?%s, want /api/oauth2/access_token?%s", r.URL.Path, q.Encode(), want.Encode())
				}
				reply(tt.status, tt.body)(w, r)
			})
			got, err := c.AccessToken(context.Background(), testApp, testSecret)
			if idasc.ClassOf(err) != tt.wantClass || got != tt.want {
				t.Fatalf("AccessToken() = %+v, %v, want %+v, class %v", got, err, tt.want, tt.wantClass)
			}
			if err == nil {
				return
			}
			var e *idasc.Error
			if !errors.As(err, &e) || e.Op != "access_token" || e.Code != tt.wantCode {
				t.Errorf("AccessToken() error = %#v, want op access_token, code %q", err, tt.wantCode)
			}
		})
	}
}

func TestSignTicket(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		body      string
		want      idasc.Credential
		wantClass idasc.Class
	}{
		{
			name: "expire_in as number",
			body: `{"code":"0","msg":"请求成功","transactionTime":"20151022044027","tickets":[{"value":"tick1","expire_in":3600,"expire_time":"20151022054027"}]}`,
			want: idasc.Credential{Value: "tick1", ExpiresIn: time.Hour},
		},
		{
			name: "short lifetime as string",
			body: `{"tickets":[{"expire_in":"1800","value":"tick2"}],"code":"0"}`,
			want: idasc.Credential{Value: "tick2", ExpiresIn: 30 * time.Minute},
		},
		{name: "no tickets", body: `{"code":"0","tickets":[]}`, wantClass: idasc.ClassTransient},
		{name: "null tickets", body: `{"code":"0","tickets":null}`, wantClass: idasc.ClassTransient},
		{name: "tickets not a list", body: `{"code":"0","tickets":{"value":"t","expire_in":3600}}`, wantClass: idasc.ClassTransient},
		{name: "no value", body: `{"code":"0","tickets":[{"expire_in":3600}]}`, wantClass: idasc.ClassTransient},
		{name: "zero expire_in", body: `{"code":"0","tickets":[{"value":"t","expire_in":"0"}]}`, wantClass: idasc.ClassTransient},
		{name: "refused", body: `{"code":"400101","msg":"access token expired"}`, wantClass: idasc.ClassRejected},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := newClient(t, func(w http.ResponseWriter, r *http.Request) {
				q := r.URL.Query()
				want := url.Values{"app_id": {testApp}, "access_token": {testToken}, "type": {"SIGN"}, "version": {"1.0.0"}}
				if r.URL.Path != "/api/oauth2/api_ticket" || q.Encode() != want.Encode() {
					t.Errorf("request %s?%s, want /api/oauth2/api_ticket?%s", r.URL.Path, q.Encode(), want.Encode())
				}
				reply(http.StatusOK, tt.body)(w, r)
			})
			got, err := c.SignTicket(context.Background(), testApp, testToken)
			if idasc.ClassOf(err) != tt.wantClass || got != tt.want {
				t.Errorf("SignTicket() = %+v, %v, want %+v, class %v", got, err, tt.want, tt.wantClass)
			}
			if e := (*idasc.Error)(nil); err != nil && (!errors.As(err, &e) || e.Op != "api_ticket") {
				t.Errorf("SignTicket() error = %#v, want an *idasc.Error with op api_ticket", err)
			}
		})
	}
}

func TestCredentialArguments(t *testing.T) {
	t.Parallel()
	c := newClient(t, func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("request sent without credentials: %s", r.URL.Path)
	})
	ctx := context.Background()
	for name, call := range map[string]func() error{
		"AccessToken no app":    func() error { _, err := c.AccessToken(ctx, "", testSecret); return err },
		"AccessToken no secret": func() error { _, err := c.AccessToken(ctx, testApp, ""); return err },
		"SignTicket no app":     func() error { _, err := c.SignTicket(ctx, "", testToken); return err },
		"SignTicket no token":   func() error { _, err := c.SignTicket(ctx, testApp, ""); return err },
	} {
		if err := call(); idasc.ClassOf(err) != idasc.ClassInvalid {
			t.Errorf("%s: error = %v, want class invalid", name, err)
		}
	}
}

// signPattern matches a signature anywhere in a text.
var signPattern = regexp.MustCompile(`[0-9A-F]{40}`)

// assertRedacted fails if the text of err holds any secret value or
// signature.
func assertRedacted(t *testing.T, call string, err error, signs ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s error = nil, want an error", call)
	}
	msg := err.Error()
	for _, v := range append([]string{testSecret, testToken, testTicket}, signs...) {
		if v != "" && strings.Contains(msg, v) {
			t.Errorf("%s error = %q, contains secret value %q", call, msg, v)
		}
	}
	if s := signPattern.FindString(msg); s != "" {
		t.Errorf("%s error = %q, contains a signature %q", call, msg, s)
	}
}

// closedURL returns the URL of a loopback port nothing listens on.
func closedURL(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return "http://" + addr
}

func TestRedactionTransportErrors(t *testing.T) {
	t.Parallel()
	// The server reads the request, remembers its signature and hangs up
	// without answering.
	var signs = make(chan string, 10)
	hangUp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		signs <- r.URL.Query().Get("sign")
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close()
		}
	}))
	t.Cleanup(hangUp.Close)
	for name, base := range map[string]string{"unreachable": closedURL(t), "hang up": hangUp.URL} {
		t.Run(name, func(t *testing.T) {
			c := idasc.New(base)
			ctx := context.Background()
			_, err := c.AccessToken(ctx, testApp, testSecret)
			assertRedacted(t, "AccessToken()", err)
			if !idasc.IsTransient(err) || !strings.Contains(err.Error(), "secret=REDACTED") {
				t.Errorf("AccessToken() error = %q, want a transient error naming secret=REDACTED", err)
			}
			_, err = c.SignTicket(ctx, testApp, testToken)
			assertRedacted(t, "SignTicket()", err)
			if !idasc.IsTransient(err) || !strings.Contains(err.Error(), "access_token=REDACTED") {
				t.Errorf("SignTicket() error = %q, want a transient error naming access_token=REDACTED", err)
			}
			// Forget what AccessToken and SignTicket left behind.
			for len(signs) > 0 {
				<-signs
			}
			_, err = c.Sync(ctx, syncReq)
			// The server sent the signature before hanging up, so it is
			// here by the time Sync has failed.
			var sent []string
			for len(signs) > 0 {
				sent = append(sent, <-signs)
			}
			assertRedacted(t, "Sync()", err, sent...)
			if !idasc.IsTransient(err) || !strings.Contains(err.Error(), "sign=REDACTED") {
				t.Errorf("Sync() error = %q, want a transient error naming sign=REDACTED", err)
			}
		})
	}
}

func TestRedactionEchoedValues(t *testing.T) {
	t.Parallel()
	// A provider that echoes the whole query in its message.
	echo := func(code string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			q := r.URL.Query()
			msg := fmt.Sprintf("bad request %s %s %s %s", q.Get("secret"), q.Get("access_token"), q.Get("sign"), r.URL.RawQuery)
			reply(http.StatusOK, fmt.Sprintf(`{"code":%q,"msg":%q}`, code, msg))(w, r)
		}
	}
	for _, code := range []string{"400101", "66660015"} {
		c := newClient(t, echo(code))
		ctx := context.Background()
		_, err := c.AccessToken(ctx, testApp, testSecret)
		assertRedacted(t, "AccessToken()", err)
		_, err = c.SignTicket(ctx, testApp, testToken)
		assertRedacted(t, "SignTicket()", err)
		res, err := c.Sync(ctx, syncReq)
		assertRedacted(t, "Sync()", err)
		if res == nil || signPattern.MatchString(res.Msg) || !strings.Contains(res.Msg, "REDACTED") {
			t.Errorf("Sync() = %+v, want a Result whose Msg has the signature redacted", res)
		}
	}
}

func TestRedactionBadBaseURL(t *testing.T) {
	t.Parallel()
	// net/url puts the whole URL in its parse error.
	c := idasc.New("http://bad host\x7f/")
	_, err := c.AccessToken(context.Background(), testApp, testSecret)
	assertRedacted(t, "AccessToken()", err)
	if idasc.ClassOf(err) != idasc.ClassInvalid {
		t.Errorf("AccessToken() with a malformed base URL: error = %v, want class invalid", err)
	}
	_, err = c.SignTicket(context.Background(), testApp, testToken)
	assertRedacted(t, "SignTicket()", err)
}

func TestRedactionTimeout(t *testing.T) {
	t.Parallel()
	c := newClient(t, func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }, idasc.WithTimeout(20*time.Millisecond))
	_, err := c.AccessToken(context.Background(), testApp, testSecret)
	assertRedacted(t, "AccessToken()", err)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("AccessToken() error = %v, want context.DeadlineExceeded in the chain", err)
	}
}

func TestNoRedirects(t *testing.T) {
	t.Parallel()
	elsewhere := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("redirect followed to %s", r.URL)
	}))
	t.Cleanup(elsewhere.Close)
	c := newClient(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, elsewhere.URL+r.URL.RequestURI(), http.StatusFound)
	})
	_, err := c.AccessToken(context.Background(), testApp, testSecret)
	var e *idasc.Error
	if !errors.As(err, &e) || e.HTTPStatus != http.StatusFound || !idasc.IsTransient(err) {
		t.Errorf("AccessToken() answered by a redirect: error = %v, want transient, http 302", err)
	}
}

func ExampleClient_Sync() {
	c := idasc.New("https://idasc.webank.com", idasc.WithTimeout(5*time.Second))
	res, err := c.Sync(context.Background(), idasc.SyncRequest{AppID: "TIDA0001", OrderNo: "ord0001", Ticket: "…"})
	switch {
	case err == nil:
		fmt.Println("passed", res.OrderNo)
	case idasc.IsNotReady(err), idasc.IsTransient(err):
		fmt.Println("retry later")
	case idasc.IsRejected(err):
		fmt.Println("refresh the ticket")
	case idasc.IsFailed(err):
		fmt.Println("failed", res.Code, res.Msg)
	default:
		fmt.Println("error", err)
	}
}
