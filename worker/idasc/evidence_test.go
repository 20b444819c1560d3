package idasc_test

import (
	"bytes"
	"cmp"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/facesync/facesync/worker/idasc"
)

// evidenceJSON encodes b the way the provider may: base64 with `/` escaped
// as `\/` and an escaped line break every 76 characters.
func evidenceJSON(b []byte) string {
	s := base64.StdEncoding.EncodeToString(b)
	var out strings.Builder
	for len(s) > 76 {
		out.WriteString(s[:76] + `\n`)
		s = s[76:]
	}
	out.WriteString(s)
	return strings.ReplaceAll(out.String(), "/", `\/`)
}

// evidenceBody is a sync answer with the given code and files; an empty
// file is left out, as the provider does when evidence is not ready.
func evidenceBody(code string, photo, video []byte) string {
	var files string
	if len(photo) > 0 {
		files += `,"photo":"` + evidenceJSON(photo) + `"`
	}
	if len(video) > 0 {
		files += `,"video":"` + evidenceJSON(video) + `"`
	}
	return `{"code":"` + code + `","msg":"m","bizSeqNo":"B9","result":{"orderNo":"ord0001","liveRate":100,` +
		`"similarity":"95.0","success":false` + files + `},"transactionTime":"20260101000000"}`
}

// collector keeps what SyncEvidence streamed, per kind.
type collector struct {
	mu    sync.Mutex
	files map[string][]byte
}

func (c *collector) fn(kind string, r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.files == nil {
		c.files = make(map[string][]byte)
	}
	if _, dup := c.files[kind]; dup {
		return fmt.Errorf("%s streamed twice", kind)
	}
	c.files[kind] = b
	return nil
}

// pattern returns n bytes that cover every byte value, so the base64 text
// holds `/` and `+`.
func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7) + seed
	}
	return b
}

func TestSyncEvidence(t *testing.T) {
	t.Parallel()
	photo := append([]byte{0xFF, 0xD8, 0xFF}, pattern(5000, 1)...)
	video := pattern(3<<20, 2) // over the small calls' 1 MiB cap
	const maxBytes = 4 << 20
	tests := []struct {
		name      string
		status    int
		body      string
		wantClass idasc.Class
		wantCode  string            // the *Error's Code
		wantFiles map[string][]byte // nil when no Result is expected
	}{
		{
			name: "photo and video", status: 200, body: evidenceBody("0", photo, video),
			wantFiles: map[string][]byte{idasc.KindPhoto: photo, idasc.KindVideo: video},
		},
		{name: "not ready yet", status: 200, body: evidenceBody("0", nil, nil), wantFiles: map[string][]byte{}},
		{
			name: "failed keeps evidence", status: 200, body: evidenceBody("66660015", photo, nil),
			wantClass: idasc.ClassFailed, wantCode: "66660015",
			wantFiles: map[string][]byte{idasc.KindPhoto: photo},
		},
		{name: "file over the cap", status: 200, body: evidenceBody("0", nil, pattern(maxBytes+1, 3)), wantClass: idasc.ClassInvalid},
		{name: "invalid base64", status: 200, body: `{"code":"0","result":{"photo":"/9j/4AA*QSkZJRg=="}}`, wantClass: idasc.ClassTransient},
		{name: "truncated", status: 200, body: evidenceBody("0", photo, video)[:1<<20], wantClass: idasc.ClassTransient},
		{name: "malformed", status: 200, body: `{"code":"0",,"result":{}}`, wantClass: idasc.ClassTransient},
		{name: "no code", status: 200, body: `{"result":{"photo":""}}`, wantClass: idasc.ClassTransient},
		{name: "http 500", status: 500, body: ``, wantClass: idasc.ClassTransient},
		{name: "http 404", status: 404, body: ``, wantClass: idasc.ClassHTTP4xx},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := newClient(t, reply(tt.status, tt.body))
			var got collector
			res, err := c.SyncEvidence(context.Background(), syncReq, "1", maxBytes, got.fn)
			if idasc.ClassOf(err) != tt.wantClass {
				t.Fatalf("SyncEvidence() error = %v, want class %v", err, tt.wantClass)
			}
			if tt.wantFiles == nil {
				if res != nil {
					t.Errorf("SyncEvidence() = %+v, want nil", res)
				}
				return
			}
			want := idasc.Result{
				Code: cmp.Or(tt.wantCode, "0"), Msg: "m", OrderNo: "ord0001", BizSeqNo: "B9",
				TransactionTime: "20260101000000", LiveRate: "100", Similarity: "95.0",
			}
			if res == nil || *res != want {
				t.Errorf("SyncEvidence() = %+v, want %+v", res, want)
			}
			if e := (*idasc.Error)(nil); err != nil && (!errors.As(err, &e) || e.Code != tt.wantCode) {
				t.Errorf("SyncEvidence() error = %v, want code %q", err, tt.wantCode)
			}
			if len(got.files) != len(tt.wantFiles) {
				t.Errorf("SyncEvidence() streamed %d files, want %d", len(got.files), len(tt.wantFiles))
			}
			for kind, b := range tt.wantFiles {
				if !bytes.Equal(got.files[kind], b) {
					t.Errorf("SyncEvidence() streamed %s of %d bytes, want the %d bytes sent", kind, len(got.files[kind]), len(b))
				}
			}
		})
	}
}

func TestSyncEvidenceRequest(t *testing.T) {
	t.Parallel()
	for _, getFile := range []string{"1", "2", "3"} {
		c := newClient(t, func(w http.ResponseWriter, r *http.Request) {
			q := r.URL.Query()
			if got := q.Get("get_file"); got != getFile {
				t.Errorf("query get_file = %q, want %q", got, getFile)
			}
			if got, want := q.Get("sign"), idasc.Sign(testApp, testOrder, "1.0.0", testTicket, q.Get("nonce")); got != want {
				t.Errorf("query sign = %q, want %q", got, want)
			}
			reply(http.StatusOK, evidenceBody("0", nil, nil))(w, r)
		})
		if _, err := c.SyncEvidence(context.Background(), syncReq, getFile, 1, new(collector).fn); err != nil {
			t.Errorf("SyncEvidence(get_file %q) error = %v", getFile, err)
		}
	}
}

func TestSyncEvidenceArguments(t *testing.T) {
	t.Parallel()
	c := newClient(t, func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("request sent for invalid arguments: %s", r.URL.RawQuery)
	})
	fn := new(collector).fn
	tests := []struct {
		name     string
		req      idasc.SyncRequest
		getFile  string
		maxBytes int64
		fn       func(string, io.Reader) error
	}{
		{name: "get_file 0", req: syncReq, getFile: "0", maxBytes: 1, fn: fn},
		{name: "get_file empty", req: syncReq, getFile: "", maxBytes: 1, fn: fn},
		{name: "get_file 4", req: syncReq, getFile: "4", maxBytes: 1, fn: fn},
		{name: "no cap", req: syncReq, getFile: "1", maxBytes: 0, fn: fn},
		{name: "no callback", req: syncReq, getFile: "1", maxBytes: 1},
		{name: "no ticket", req: idasc.SyncRequest{AppID: testApp, OrderNo: testOrder}, getFile: "1", maxBytes: 1, fn: fn},
	}
	for _, tt := range tests {
		if _, err := c.SyncEvidence(context.Background(), tt.req, tt.getFile, tt.maxBytes, tt.fn); idasc.ClassOf(err) != idasc.ClassInvalid {
			t.Errorf("SyncEvidence() with %s: error = %v, want class invalid", tt.name, err)
		}
	}
}

func TestSyncEvidenceCallbackError(t *testing.T) {
	t.Parallel()
	errSink := errors.New("sink unavailable")
	tests := []struct {
		name      string
		fnErr     error
		wantClass idasc.Class
	}{
		{name: "plain error", fnErr: errSink, wantClass: idasc.ClassTransient},
		{name: "wrapped", fnErr: fmt.Errorf("upload photo: %w", errSink), wantClass: idasc.ClassTransient},
		{name: "typed", fnErr: &idasc.Error{Op: "sync", Class: idasc.ClassInvalid, Err: errSink}, wantClass: idasc.ClassInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := newClient(t, reply(http.StatusOK, evidenceBody("0", pattern(100, 4), pattern(100, 5))))
			_, err := c.SyncEvidence(context.Background(), syncReq, "1", 1<<20, func(string, io.Reader) error { return tt.fnErr })
			if !errors.Is(err, errSink) || idasc.ClassOf(err) != tt.wantClass {
				t.Errorf("SyncEvidence() with a failing callback = %v, class %v, want %v reaching %v", err, idasc.ClassOf(err), tt.wantClass, errSink)
			}
		})
	}
}

func TestSyncEvidenceTimeouts(t *testing.T) {
	t.Parallel()
	t.Run("small-call timeout does not apply", func(t *testing.T) {
		t.Parallel()
		c := newClient(t, func(w http.ResponseWriter, r *http.Request) {
			time.Sleep(100 * time.Millisecond)
			reply(http.StatusOK, evidenceBody("0", pattern(10, 6), nil))(w, r)
		}, idasc.WithTimeout(time.Millisecond))
		if _, err := c.SyncEvidence(context.Background(), syncReq, "2", 1<<20, new(collector).fn); err != nil {
			t.Errorf("SyncEvidence() past the small-call timeout = %v, want success", err)
		}
	})
	t.Run("evidence timeout", func(t *testing.T) {
		t.Parallel()
		c := newClient(t, func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.WriteString(w, `{"code":"0","result":{"photo":"`+evidenceJSON(pattern(3000, 7)))
			w.(http.Flusher).Flush()
			<-r.Context().Done()
		}, idasc.WithEvidenceTimeout(50*time.Millisecond))
		_, err := c.SyncEvidence(context.Background(), syncReq, "2", 1<<20, new(collector).fn)
		if !idasc.IsTransient(err) || !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("SyncEvidence() from a stalled body = %v, want a transient deadline error", err)
		}
	})
}

func TestSyncEvidenceRedaction(t *testing.T) {
	t.Parallel()
	c := idasc.New(closedURL(t))
	_, err := c.SyncEvidence(context.Background(), syncReq, "1", 1, new(collector).fn)
	assertRedacted(t, "SyncEvidence()", err)
	if !idasc.IsTransient(err) {
		t.Errorf("SyncEvidence() to a closed port = %v, want a transient error", err)
	}
}

func TestSyncAndEvidenceAgree(t *testing.T) {
	t.Parallel()
	// Sync reads the body whole and SyncEvidence streams it; both must
	// read the same Result from the same answer.
	for _, body := range []string{
		evidenceBody("0", pattern(10, 8), nil),
		`{"result":{"orderNo":"o\/1","liveRate":99.5,"similarity":"7"},"code":66660015,"msg":"\u59d3\u540d"}`,
		`{"code":"0","msg":null,"bizSeqNo":"TOP","transactionTime":"T","result":{"bizSeqNo":null,"orderNo":null,"name":"null","success":true}}`,
		`{"code":"66660011","result":null,"bizSeqNo":"B","transactionTime":20260101000000}`,
		`{"code":"400101","msg":"不合法请求","result":{}}`,
	} {
		c := newClient(t, reply(http.StatusOK, body))
		res1, err1 := c.Sync(context.Background(), syncReq)
		res2, err2 := c.SyncEvidence(context.Background(), syncReq, "1", 1<<20, new(collector).fn)
		if res1 == nil || res2 == nil || *res1 != *res2 || idasc.ClassOf(err1) != idasc.ClassOf(err2) {
			t.Errorf("body %s: Sync() = %+v, %v; SyncEvidence() = %+v, %v; want the same", body, res1, err1, res2, err2)
		}
	}
}
