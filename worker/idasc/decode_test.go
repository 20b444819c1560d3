package idasc

import (
	"context"
	"encoding/json"
	"errors"
	"net/url"
	"strings"
	"testing"
)

// FuzzDecodeSync feeds arbitrary bodies to the sync decoder: it must never
// panic, must refuse anything that is not valid JSON, and must only accept
// an answer with a well-formed code.
func FuzzDecodeSync(f *testing.F) {
	for _, seed := range []string{
		`{"code":"0","msg":"请求成功","bizSeqNo":"18081020001015300215034200859792","result":{"bizSeqNo":"18081020001015300215034200859792","transactionTime":"20180810150342","orderNo":"orderNo19959248596551","idNo":"***","idType":"01","name":"***","video":"******","photo":"******","liveRate":"100","similarity":"95.0","occurredTime":"20180810150152","success":false},"transactionTime":"20180810150342","app_id":"TIDAlsRT","order_no":"orderNo19959248596551"}`,
		`{"code":66660011,"msg":"无此ID的刷脸结果","result":null}`,
		`{"result":{"orderNo":"o\/1","liveRate":100,"similarity":95.0},"code":"0"}`,
		`{"code":"400101","msg":"不合法请求"}`,
		`{"code":"66660015","result":{"photo":"/9j\/4AAQ\nSkZJRg=="}}`,
		`{"code":"0","result":"none"}`,
		`{"code":{"v":1}}`,
		`{"code":"0",`,
		`{"code":-1e3}`,
		`null`,
		`[]`,
		``,
		"{\"code\":\"0\",\"msg\":\"\\ud800\"}",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		res, err := decodeSync(body)
		if err != nil {
			if res != nil {
				t.Errorf("decodeSync(%q) = %+v, %v, want a nil Result with the error", body, res, err)
			}
			return
		}
		if !json.Valid(body) {
			t.Errorf("decodeSync(%q) accepted invalid JSON as %+v", body, res)
		}
		if res == nil || !validCode(res.Code) {
			t.Errorf("decodeSync(%q) = %+v, want a Result with a numeric code", body, res)
		}
	})
}

func TestRedactURL(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in, want string
	}{
		{
			in:   "https://h/api/oauth2/access_token?app_id=A&secret=s3cr%2Ft&grant_type=client_credential",
			want: "https://h/api/oauth2/access_token?app_id=A&secret=REDACTED&grant_type=client_credential",
		},
		{
			in:   "https://h/api/server/sync?sign=ABC&nonce=n&order_no=o",
			want: "https://h/api/server/sync?sign=REDACTED&nonce=n&order_no=o",
		},
		{
			in:   "http://h/x?Access_Token=t&ticket=k#frag",
			want: "http://h/x?Access_Token=REDACTED&ticket=REDACTED#frag",
		},
		{in: "http://h/x?%73ecret=t", want: "http://h/x?%73ecret=REDACTED"},
		{in: "http://h/x?secret", want: "http://h/x?secret=REDACTED"},
		{in: "http://h/x?%zz=1&secret=t", want: "http://h/x?REDACTED"},
		{in: "http://h/x", want: "http://h/x"},
	}
	for _, tt := range tests {
		if got := redactURL(tt.in); got != tt.want {
			t.Errorf("redactURL(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestRedactorErr(t *testing.T) {
	t.Parallel()
	red := newRedactor("s3cr/t", "")
	tests := []struct {
		name    string
		in      error
		want    string
		wantIs  error
		wantURL bool // the result still unwraps to a *url.Error
	}{
		{
			name:    "url error",
			in:      &url.Error{Op: "Get", URL: "http://h/?secret=s3cr%2Ft", Err: context.Canceled},
			want:    `Get "http://h/?secret=REDACTED": context canceled`,
			wantIs:  context.Canceled,
			wantURL: true,
		},
		{
			name:   "value in the text",
			in:     errors.Join(context.DeadlineExceeded, errors.New("echoed s3cr/t and s3cr%2Ft")),
			want:   "context deadline exceeded\nechoed REDACTED and REDACTED",
			wantIs: context.DeadlineExceeded,
		},
		{name: "clean", in: errors.New("connection reset"), want: "connection reset"},
	}
	for _, tt := range tests {
		got := red.err(tt.in)
		if got.Error() != tt.want {
			t.Errorf("%s: redactor.err(%q) = %q, want %q", tt.name, tt.in, got, tt.want)
		}
		if tt.wantIs != nil && !errors.Is(got, tt.wantIs) {
			t.Errorf("%s: redactor.err(%q) = %q, does not match %v", tt.name, tt.in, got, tt.wantIs)
		}
		var ue *url.Error
		if errors.As(got, &ue) != tt.wantURL || (ue != nil && strings.Contains(ue.URL, "s3cr")) {
			t.Errorf("%s: redactor.err(%q) unwraps to url error %v, want one: %v, redacted", tt.name, tt.in, ue, tt.wantURL)
		}
	}
	if red.err(nil) != nil {
		t.Error("redactor.err(nil) != nil")
	}
}

// TestScalarText: values without an escape are taken as they are (the
// fast path); everything else goes through encoding/json, with the same
// result.
func TestScalarText(t *testing.T) {
	t.Parallel()
	tests := []struct {
		raw  string
		want string
		ok   bool
		err  bool
	}{
		{`"0"`, "0", true, false},
		{`"张三"`, "张三", true, false},
		{`"a\"b"`, `a"b`, true, false},
		{`"line\nbreak"`, "line\nbreak", true, false},
		{`"\u5f20"`, "张", true, false},
		{` "x" `, "x", true, false},
		{`""`, "", true, false},
		{`"`, "", false, true},
		{"\"\xff\"", "\uFFFD", true, false},
		{`66660011`, "66660011", true, false},
		{`null`, "", false, false},
		{`{}`, "", false, true},
		{``, "", false, true},
	}
	for _, tt := range tests {
		got, ok, err := scalarText([]byte(tt.raw))
		if got != tt.want || ok != tt.ok || (err != nil) != tt.err {
			t.Errorf("scalarText(%q) = %q, %v, %v; want %q, %v, error %v", tt.raw, got, ok, err, tt.want, tt.ok, tt.err)
		}
	}
}
