package evjson

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

// readers wraps the body in the ways a network body may arrive.
var readers = []struct {
	name string
	wrap func(io.Reader) io.Reader
}{
	{"plain", nil},
	{"one byte", iotest.OneByteReader},
	{"half", iotest.HalfReader},
	{"data with EOF", iotest.DataErrReader},
}

func TestExtractEncodings(t *testing.T) {
	t.Parallel()
	// Sizes cover each final quantum (n%3 of 0, 1 and 2) and texts longer
	// than the internal buffers, so escapes land across their edges.
	sizes := []int{1, 2, 3, 4, 5, 57, 1000, 100<<10 + 1, 200<<10 + 2}
	encodings := []struct {
		name string
		opts encOpts
	}{
		{"plain", encOpts{}},
		{"escaped slash", encOpts{escapeSlash: true}},
		{"u escapes", encOpts{uEvery: 3}},
		{"every char u escaped", encOpts{uEvery: 1}},
		{"escaped CRLF every 76", encOpts{lineEvery: 76, lineBreak: `\r\n`}},
		{"escaped LF every 64", encOpts{lineEvery: 64, lineBreak: `\n`}},
		{"u escaped CRLF", encOpts{lineEvery: 76, lineBreak: `\u000D\u000a`}},
		{"raw CRLF every 76", encOpts{lineEvery: 76, lineBreak: "\r\n"}},
		{"raw LF every 5", encOpts{lineEvery: 5, lineBreak: "\n"}},
		{"spaces and tabs", encOpts{lineEvery: 7, lineBreak: ` \t `}},
		{"raw tab every 3", encOpts{lineEvery: 3, lineBreak: "\t"}},
		{"data URL", encOpts{dataURL: "data:image/jpeg;base64,"}},
		{"data URL upper case", encOpts{dataURL: "DATA:video/mp4;BASE64,"}},
		{"data URL then line breaks", encOpts{dataURL: "data:image/png;base64,", lineEvery: 76, lineBreak: `\r\n`, escapeSlash: true}},
		{"no padding", encOpts{noPad: true}},
		{"no padding with escapes", encOpts{noPad: true, escapeSlash: true, lineEvery: 76, lineBreak: `\n`, uEvery: 11}},
	}
	for _, enc := range encodings {
		for _, rd := range readers {
			t.Run(enc.name+"/"+rd.name, func(t *testing.T) {
				t.Parallel()
				for i, n := range sizes {
					if rd.wrap != nil && n > 1<<10 && enc.opts.uEvery != 1 {
						n = 70 << 10 // one-byte reads are slow: one buffer's worth is enough
					}
					photo, video := payload(n, byte(i)), payload(n+1, byte(i+100))
					body := syncBody(encode(photo, enc.opts), encode(video, enc.opts), bodyOpts{})
					g := run(body, 0, rd.wrap)
					if g.err != nil {
						t.Fatalf("Extract(%s, %d bytes) error = %v, want nil", enc.name, n, g.err)
					}
					if !bytes.Equal(g.files["photo"], photo) || !bytes.Equal(g.files["video"], video) {
						t.Fatalf("Extract(%s, %d bytes): photo %d bytes, video %d bytes, differ from the %d and %d encoded",
							enc.name, n, len(g.files["photo"]), len(g.files["video"]), len(photo), len(video))
					}
					if g.fields.Top["code"] != "0" {
						t.Fatalf("Extract(%s) code = %q, want %q", enc.name, g.fields.Top["code"], "0")
					}
				}
			})
		}
	}
}

func TestExtractLayouts(t *testing.T) {
	t.Parallel()
	photo, video := payload(3000, 1), payload(7000, 2)
	p, v := encode(photo, encOpts{escapeSlash: true}), encode(video, encOpts{})
	tests := []struct {
		name      string
		body      string
		wantOrder string
	}{
		{"code first", syncBody(p, v, bodyOpts{}), "photo,video"},
		{"result first", syncBody(p, v, bodyOpts{resultFirst: true}), "photo,video"},
		{"video first", syncBody(p, v, bodyOpts{videoFirst: true}), "video,photo"},
		{"result first and video first", syncBody(p, v, bodyOpts{resultFirst: true, videoFirst: true}), "video,photo"},
		{"nested once", syncBody(p, v, bodyOpts{nested: 1}), "photo,video"},
		{"nested thrice", syncBody(p, v, bodyOpts{nested: 3, videoFirst: true}), "video,photo"},
		{"top level", syncBody(p, v, bodyOpts{topLevel: true}), "photo,video"},
		{"code as number", syncBody(p, v, bodyOpts{codeNumber: true, resultFirst: true}), "photo,video"},
		{"in an array under result", `{"result":{"files":[{"video":"` + v + `"},{"photo":"` + p + `"}]},"code":"0"}`, "video,photo"},
		{"whitespace between tokens", " \r\n{ \"code\" : \"0\" ,\n\t\"result\" : { \"photo\" :\"" + p + "\" , \"video\"\t:\n\"" + v + "\" } }\n", "photo,video"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			g := run(tt.body, 0, nil)
			if g.err != nil {
				t.Fatalf("Extract(%s) error = %v, want nil", tt.name, g.err)
			}
			if order := strings.Join(g.order, ","); order != tt.wantOrder {
				t.Errorf("Extract(%s) called back for %q, want %q", tt.name, order, tt.wantOrder)
			}
			if !bytes.Equal(g.files["photo"], photo) || !bytes.Equal(g.files["video"], video) {
				t.Errorf("Extract(%s) decoded files differ from the originals", tt.name)
			}
			if g.fields.Top["code"] != "0" {
				t.Errorf("Extract(%s) code = %q, want %q", tt.name, g.fields.Top["code"], "0")
			}
			if _, ok := g.fields.Result["photo"]; ok {
				t.Errorf("Extract(%s) kept the photo as a field", tt.name)
			}
		})
	}
}

func TestExtractFields(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", maxFieldBytes+1)
	body := `{"code":66660011,"msg":"\u8bf7\u6c42\u6210\u529f \ud83d\ude00 \ud800 \"q\" \\ \/ \b\f\n\r\t",` +
		`"neg":-1.5e+3,"zero":0,"t":true,"f":false,"n":null,"obj":{"inner":"no"},"arr":[1,"a"],` +
		`"huge":"` + long + `","bad":"a` + "\xff" + `b",` +
		`"result":{"orderNo":"ord1","liveRate":"100","similarity":95.0,"success":false,"idNo":null,` +
		`"deeper":{"orderNo":"second","occurredTime":"20180810150152","list":[{"x":"1"},{"x":"2"}]}},` +
		`"code":"dup","transactionTime":"20180810150342"}`
	g := run(body, 0, nil)
	if g.err != nil {
		t.Fatalf("Extract() error = %v, want nil", g.err)
	}
	wantTop := map[string]string{
		"code": "66660011", "msg": "请求成功 😀 \uFFFD \"q\" \\ / \b\f\n\r\t",
		"neg": "-1.5e+3", "zero": "0", "t": "true", "f": "false", "n": "null",
		"bad": "a\uFFFDb", "transactionTime": "20180810150342",
	}
	wantResult := map[string]string{
		"orderNo": "ord1", "liveRate": "100", "similarity": "95.0", "success": "false", "idNo": "null",
		"occurredTime": "20180810150152", "x": "1",
	}
	for _, c := range []struct {
		name      string
		got, want map[string]string
	}{{"Top", g.fields.Top, wantTop}, {"Result", g.fields.Result, wantResult}} {
		for k, want := range c.want {
			if got, ok := c.got[k]; !ok || got != want {
				t.Errorf("Extract() %s[%q] = %q (present %v), want %q", c.name, k, got, ok, want)
			}
		}
		if len(c.got) != len(c.want) {
			t.Errorf("Extract() %s has %d fields, want %d: %q", c.name, len(c.got), len(c.want), c.got)
		}
	}
}

func TestExtractFieldBudget(t *testing.T) {
	t.Parallel()
	var b strings.Builder
	b.WriteString(`{"code":"0"`)
	for i := range 100000 {
		fmt.Fprintf(&b, `,"k%d":%d`, i, i)
	}
	b.WriteString(`,"result":{"photo":"QUJD"}}`)
	g := run(b.String(), 0, nil)
	if g.err != nil || string(g.files["photo"]) != "ABC" || g.fields.Top["code"] != "0" {
		t.Fatalf("Extract(100000 fields) error = %v, code %q; want nil, %q and the photo", g.err, g.fields.Top["code"], "0")
	}
	if n := len(g.fields.Top); n < 1000 || n > maxFieldsBytes/32 {
		t.Errorf("Extract(100000 fields) kept %d, want between 1000 and %d", n, maxFieldsBytes/32)
	}
}

func TestExtractAbsent(t *testing.T) {
	t.Parallel()
	tests := []string{
		`{"code":"0","result":{"photo":"","video":""}}`,
		`{"code":"0","result":{"photo":null,"video":null}}`,
		`{"code":"0","result":{}}`,
		`{"code":"0"}`,
		`{"code":"0","result":null}`,
		`{"code":"0","result":{"photo":"data:image\/jpeg;base64,","video":"\r\n \t"}}`,
		`{"code":"0","result":{"photo":"\n","video":"\u0020"}}`,
		`{"code":"0","photo":"","result":{"photo":{"not":"a file"},"video":7}}`,
		`{"code":"0","other":{"photo":"QUJD"}}`, // not under result: not evidence
	}
	for _, body := range tests {
		g := run(body, 0, nil)
		if g.err != nil || len(g.order) != 0 {
			t.Errorf("Extract(%q) called back for %q, error %v; want no call, nil", body, g.order, g.err)
		}
	}
}

func TestExtractLeadingText(t *testing.T) {
	t.Parallel()
	photo := payload(1000, 13)
	text := encode(photo, encOpts{})
	tests := []struct {
		name, prefix string
	}{
		{"escaped line breaks over a buffer", strings.Repeat(`\r\n`, 40000)},
		{"raw spaces over a buffer", strings.Repeat(" ", 70000)},
		{"spaces then a data URL", strings.Repeat(" ", 70000) + "data:image/jpeg;base64,"},
		{"line breaks inside a data URL header", `data:image\/jpeg;\r\nbase64,\n`},
		{"line breaks after a data URL header, over a buffer", "data:image/jpeg;base64," + strings.Repeat(`\n`, 70000)},
		{"raw spaces inside a data URL header, over a buffer", "data:" + strings.Repeat(" ", 70000) + "image/jpeg;base64,"},
	}
	for _, tt := range tests {
		g := run(syncBody(tt.prefix+text, "", bodyOpts{}), 0, nil)
		if g.err != nil || !bytes.Equal(g.files["photo"], photo) {
			t.Errorf("Extract(%s) error = %v, photo %d bytes; want nil, the %d bytes", tt.name, g.err, len(g.files["photo"]), len(photo))
		}
	}
	// Padding that ends a buffer may be followed by whitespace only.
	padded := payload(encSize/4*3-1, 14) // encodes to exactly encSize characters
	for _, tail := range []string{" \r\n", `\r\n`, ""} {
		g := run(syncBody(encode(padded, encOpts{})+tail, "", bodyOpts{}), 0, nil)
		if g.err != nil || !bytes.Equal(g.files["photo"], padded) {
			t.Errorf("Extract(padded text of %d characters, then %q) error = %v; want nil and the photo", encSize, tail, g.err)
		}
	}
	// A data URL header that never ends within the buffer is refused.
	g := run(syncBody("data:"+strings.Repeat("x", encSize)+";base64,"+text, "", bodyOpts{}), 0, nil)
	if !errors.Is(g.err, ErrBase64) {
		t.Errorf("Extract(data URL header of %d bytes) error = %v, want ErrBase64", encSize, g.err)
	}
}

func TestExtractDuplicateFiles(t *testing.T) {
	t.Parallel()
	// The first photo with text wins; later ones are checked as JSON only.
	body := `{"photo":"","result":{"photo":"QUJD","more":{"photo":"not base64 but skipped\n"}},"photo":"REVG"}`
	g := run(body, 0, nil)
	if g.err != nil {
		t.Fatalf("Extract(%q) error = %v, want nil", body, g.err)
	}
	if got := string(g.files["photo"]); got != "ABC" || len(g.order) != 1 {
		t.Errorf("Extract(%q) photo = %q after %d calls, want %q after 1", body, got, len(g.order), "ABC")
	}
}

func TestExtractTruncated(t *testing.T) {
	t.Parallel()
	photo, video := payload(100, 3), payload(200, 4)
	bodies := []string{
		syncBody(encode(photo, encOpts{escapeSlash: true, uEvery: 9, lineEvery: 20, lineBreak: `\r\n`}), encode(video, encOpts{}), bodyOpts{}),
		syncBody(encode(photo, encOpts{noPad: true}), encode(video, encOpts{dataURL: "data:video/mp4;base64,", noPad: true}), bodyOpts{resultFirst: true, codeNumber: true}),
		`{"a":[1,-2.5e3,true,false,null,{"b":"\ud83d\ude00"}],"code":0}`,
	}
	for bi, body := range bodies {
		full := run(body, 0, nil)
		if full.err != nil {
			t.Fatalf("Extract(body %d) error = %v, want nil", bi, full.err)
		}
		for cut := 0; cut < len(body); cut++ {
			g := run(body[:cut], 0, nil)
			if !errors.Is(g.err, ErrSyntax) && !errors.Is(g.err, ErrBase64) {
				t.Fatalf("Extract(body %d cut at %d of %d) error = %v, want ErrSyntax or ErrBase64", bi, cut, len(body), g.err)
			}
			if g.fields != nil {
				t.Fatalf("Extract(body %d cut at %d) fields = %v, want nil", bi, cut, g.fields)
			}
			// A callback that got a file either got all of it, or its
			// reader failed: never a short file that looked complete.
			for kind, err := range g.readErr {
				if err == nil && !bytes.Equal(g.files[kind], full.files[kind]) {
					t.Fatalf("Extract(body %d cut at %d) %s reader ended cleanly after %d of %d bytes",
						bi, cut, kind, len(g.files[kind]), len(full.files[kind]))
				}
			}
		}
	}
}

func TestExtractInvalidBase64(t *testing.T) {
	t.Parallel()
	good := encode(payload(150<<10, 5), encOpts{}) // longer than one buffer
	tests := []struct {
		name, text string
	}{
		{"star in the middle", good[:len(good)/2] + "*" + good[len(good)/2:]},
		{"url-safe alphabet", "ab-_" + good},
		{"padding in the middle", "QQ==" + good},
		{"padding ending a buffer, then text", good[:encSize-4] + "QQ==" + good[encSize:]},
		{"padding ending a buffer, then an escape", good[:encSize-4] + "QQ==" + `\u0041`},
		{"non-ASCII escape", good[:100] + `\u00e9` + good[100:]},
		{"raw non-ASCII", good[:100] + "é" + good[100:]},
		{"escaped quote", good[:8] + `\"` + good[8:]},
		{"escaped backslash", good[:8] + `\\` + good[8:]},
		{"escaped form feed", good[:8] + `\f` + good[8:]},
		{"raw NUL", good[:8] + "\x00" + good[8:]},
		{"one char over a quantum", good + "Q"},
		{"partial padding", "QUJDQQ="},
		{"nonzero trailing bits", "QUJDQR=="},
		{"nonzero trailing bits unpadded", "QUJDQR"},
		{"data URL without base64", "data:image/jpeg,QUJD"},
		{"data URL without comma", "data:image/jpeg;base64"},
		{"data URL header with a control character", "data:image/jpeg\x01;base64,QUJD"},
	}
	for _, tt := range tests {
		for _, rd := range readers[:2] {
			t.Run(tt.name+"/"+rd.name, func(t *testing.T) {
				t.Parallel()
				body := syncBody("", tt.text, bodyOpts{})
				g := run(body, 0, rd.wrap)
				if !errors.Is(g.err, ErrBase64) {
					t.Fatalf("Extract(%s) error = %v, want ErrBase64", tt.name, g.err)
				}
				if err, called := g.readErr["video"]; called && !errors.Is(err, ErrBase64) {
					t.Errorf("Extract(%s) reader error = %v, want ErrBase64", tt.name, err)
				}
			})
		}
	}
}

func TestExtractSyntaxErrors(t *testing.T) {
	t.Parallel()
	deep := strings.Repeat(`{"a":`, maxDepth+1) + "1" + strings.Repeat("}", maxDepth+1)
	deepArr := `{"a":` + strings.Repeat("[", maxDepth) + strings.Repeat("]", maxDepth) + "}"
	tests := []string{
		``, ` `, `[]`, `"x"`, `1`, `null`, "\xef\xbb\xbf{}",
		`{}x`, `{}{}`, `{"a":1,}`, `{"a" 1}`, `{a:1}`, `{"a":1 "b":2}`, `{"a":[1,]}`, `{"a":[1 2]}`,
		`{"a":01}`, `{"a":1.}`, `{"a":-}`, `{"a":1e}`, `{"a":1e+}`, `{"a":+1}`, `{"a":.5}`,
		`{"a":tru}`, `{"a":nul}`, `{"a":True}`, `{"a":x}`,
		`{"a":"\x"}`, `{"a":"\u12G4"}`, "{\"a\":\"\x01\"}", "{\"a\":\"line\nbreak\"}", "{\"a\x1f\":1}",
		`{"photo":"QUJD\x"}`, `{"photo":"QUJD\u00G0"}`, `{"photo":"QUJD"`, `{"photo":"QUJD"}}`,
		`{"result":{"photo":"QUJD"},"result":{"photo":"skipped\q"}}`,
		deep, deepArr,
	}
	for _, body := range tests {
		g := run(body, 0, nil)
		if !errors.Is(g.err, ErrSyntax) {
			t.Errorf("Extract(%q) error = %v, want ErrSyntax", body, g.err)
		}
	}
	// The limit itself is fine.
	ok := strings.Repeat(`{"a":`, maxDepth) + "1" + strings.Repeat("}", maxDepth)
	if g := run(ok, 0, nil); g.err != nil {
		t.Errorf("Extract(%d levels) error = %v, want nil", maxDepth, g.err)
	}
}

func TestExtractTooLarge(t *testing.T) {
	t.Parallel()
	video := payload(300<<10, 6)
	body := syncBody(encode(payload(10, 7), encOpts{}), encode(video, encOpts{escapeSlash: true}), bodyOpts{})
	for _, tt := range []struct {
		max     int64
		wantErr error
	}{
		{0, nil},
		{-1, nil},
		{int64(len(video)), nil},
		{int64(len(video)) - 1, ErrTooLarge},
		{20, ErrTooLarge},
	} {
		g := run(body, tt.max, nil)
		if !errors.Is(g.err, tt.wantErr) || (tt.wantErr == nil) != (g.err == nil) {
			t.Errorf("Extract(max %d) error = %v, want %v", tt.max, g.err, tt.wantErr)
		}
		if tt.wantErr != nil && !errors.Is(g.readErr["video"], ErrTooLarge) {
			t.Errorf("Extract(max %d) reader error = %v, want ErrTooLarge", tt.max, g.readErr["video"])
		}
		if tt.wantErr == nil && !bytes.Equal(g.files["video"], video) {
			t.Errorf("Extract(max %d) video differs from the original", tt.max)
		}
	}
	// The limit holds when the callback reads nothing: Extract drains.
	_, err := Extract(strings.NewReader(body), 1000, func(string, io.Reader) error { return nil })
	if !errors.Is(err, ErrTooLarge) {
		t.Errorf("Extract(max 1000, callback reads nothing) error = %v, want ErrTooLarge", err)
	}
}

type uploadError struct{ kind string }

type failingWriter struct{ err error }

func (w failingWriter) Write([]byte) (int, error) { return 0, w.err }

func (e *uploadError) Error() string { return "upload of " + e.kind + " failed" }

func TestExtractCallbackError(t *testing.T) {
	t.Parallel()
	body := syncBody(encode(payload(100<<10, 8), encOpts{}), encode(payload(100, 9), encOpts{}), bodyOpts{})
	var calls []string
	_, err := Extract(strings.NewReader(body), 0, func(kind string, r io.Reader) error {
		calls = append(calls, kind)
		if _, err := io.CopyN(io.Discard, r, 10); err != nil {
			return err
		}
		return &uploadError{kind}
	})
	var ue *uploadError
	if !errors.As(err, &ue) || ue.kind != "photo" {
		t.Fatalf("Extract() error = %v, want the photo's *uploadError", err)
	}
	if len(calls) != 1 {
		t.Errorf("Extract() called back %d times after an error, want 1", len(calls))
	}

	// A writer's error stops io.Copy through WriteTo and comes back.
	_, err = Extract(strings.NewReader(body), 0, func(kind string, r io.Reader) error {
		_, err := io.Copy(failingWriter{&uploadError{kind}}, r)
		return err
	})
	if !errors.As(err, &ue) {
		t.Errorf("Extract(writer fails) error = %v, want an *uploadError", err)
	}

	// A callback that wraps its reader's error keeps the sentinel reachable.
	bad := syncBody("QUJD*", "", bodyOpts{})
	_, err = Extract(strings.NewReader(bad), 0, func(kind string, r io.Reader) error {
		_, err := io.Copy(io.Discard, r)
		return fmt.Errorf("store %s: %w", kind, err)
	})
	if !errors.Is(err, ErrBase64) || !strings.Contains(err.Error(), "store photo") {
		t.Errorf("Extract(bad photo) error = %v, want the callback's error wrapping ErrBase64", err)
	}

	// A callback that fails for its own reason after its reader failed:
	// both errors are reachable.
	sentinel := errors.New("abort")
	_, err = Extract(strings.NewReader(bad), 0, func(kind string, r io.Reader) error {
		_, _ = io.Copy(io.Discard, r)
		return sentinel
	})
	if !errors.Is(err, sentinel) || !errors.Is(err, ErrBase64) {
		t.Errorf("Extract(bad photo, callback aborts) error = %v, want both abort and ErrBase64", err)
	}

	// A callback that ignores its reader's error does not hide it.
	_, err = Extract(strings.NewReader(bad), 0, func(kind string, r io.Reader) error {
		_, _ = io.Copy(io.Discard, r)
		return nil
	})
	if !errors.Is(err, ErrBase64) {
		t.Errorf("Extract(bad photo, callback ignores error) error = %v, want ErrBase64", err)
	}
}

func TestExtractPartialRead(t *testing.T) {
	t.Parallel()
	photo, video := payload(200<<10, 10), payload(5000, 11)
	body := syncBody(encode(photo, encOpts{escapeSlash: true}), encode(video, encOpts{}), bodyOpts{})
	var kept io.Reader
	var head []byte
	var videoSum [32]byte
	fields, err := Extract(strings.NewReader(body), 0, func(kind string, r io.Reader) error {
		if kind == "photo" {
			kept = r
			head = make([]byte, 10)
			_, err := io.ReadFull(r, head)
			return err
		}
		// The photo's reader, kept, must not read the video.
		if n, err := kept.Read(make([]byte, 10)); err == nil {
			t.Errorf("photo Read during the video callback = %d, nil; want an error", n)
		}
		h := sha256.New()
		_, err := io.Copy(h, r)
		h.Sum(videoSum[:0])
		return err
	})
	if err != nil {
		t.Fatalf("Extract(callback reads 10 bytes) error = %v, want nil", err)
	}
	if !bytes.Equal(head, photo[:10]) || videoSum != sha256.Sum256(video) || fields.Top["code"] != "0" {
		t.Errorf("Extract(callback reads 10 bytes): head, video or code wrong after the rest was skipped")
	}
	if n, err := kept.Read(make([]byte, 10)); err == nil {
		t.Errorf("Read after the callback returned = %d, nil; want an error", n)
	}

	// What the callback leaves unread is still checked.
	bad := syncBody(encode(photo, encOpts{})+"*", "", bodyOpts{})
	_, err = Extract(strings.NewReader(bad), 0, func(kind string, r io.Reader) error { return nil })
	if !errors.Is(err, ErrBase64) {
		t.Errorf("Extract(bad tail, callback reads nothing) error = %v, want ErrBase64", err)
	}

	// A nil callback checks and discards.
	if _, err := Extract(strings.NewReader(bad), 0, nil); !errors.Is(err, ErrBase64) {
		t.Errorf("Extract(bad tail, nil callback) error = %v, want ErrBase64", err)
	}
	if f, err := Extract(strings.NewReader(body), 0, nil); err != nil || f.Top["code"] != "0" {
		t.Errorf("Extract(nil callback) = %v, %v; want code 0, nil", f, err)
	}
}

// failingReader returns the body's first n bytes, then err.
type failingReader struct {
	r   io.Reader
	n   int
	err error
}

func (f *failingReader) Read(p []byte) (int, error) {
	if f.n <= 0 {
		return 0, f.err
	}
	p = p[:min(len(p), f.n)]
	n, err := f.r.Read(p)
	f.n -= n
	return n, err
}

func TestExtractReadError(t *testing.T) {
	t.Parallel()
	photo := payload(100<<10, 12)
	body := syncBody(encode(photo, encOpts{}), "", bodyOpts{})
	netErr := errors.New("connection reset")
	for _, n := range []int{0, 10, 200, 50 << 10, len(body) - 1} {
		g := run(body, 0, func(r io.Reader) io.Reader { return &failingReader{r: r, n: n, err: netErr} })
		if !errors.Is(g.err, netErr) {
			t.Errorf("Extract(read error after %d bytes) error = %v, want %v", n, g.err, netErr)
		}
		// The reader fails with the read error unless it had already
		// delivered the whole photo.
		if err, called := g.readErr["photo"]; called && !errors.Is(err, netErr) && (err != nil || !bytes.Equal(g.files["photo"], photo)) {
			t.Errorf("Extract(read error after %d bytes) reader error = %v after %d bytes, want %v", n, err, len(g.files["photo"]), netErr)
		}
	}
	g := run(body, 0, iotest.TimeoutReader)
	if !errors.Is(g.err, iotest.ErrTimeout) {
		t.Errorf("Extract(TimeoutReader) error = %v, want %v", g.err, iotest.ErrTimeout)
	}
	g = run(body, 0, func(r io.Reader) io.Reader { return emptyReader{} })
	if !errors.Is(g.err, io.ErrNoProgress) {
		t.Errorf("Extract(reader that never progresses) error = %v, want %v", g.err, io.ErrNoProgress)
	}
}

type emptyReader struct{}

func (emptyReader) Read([]byte) (int, error) { return 0, nil }

func TestErrorsNeverQuoteTheBody(t *testing.T) {
	t.Parallel()
	secret := "S3CRETNAME"
	bodies := []string{
		`{"name":"` + secret + "\x01" + `"}`,
		`{"name":"` + secret + `\q"}`,
		`{"photo":"` + secret + `*"}`,
		`{"` + secret + `" 1}`,
	}
	for _, body := range bodies {
		_, err := Extract(strings.NewReader(body), 0, nil)
		if err == nil || strings.Contains(err.Error(), secret) {
			t.Errorf("Extract(%q) error = %v, want an error that does not quote the body", body, err)
		}
	}
}
