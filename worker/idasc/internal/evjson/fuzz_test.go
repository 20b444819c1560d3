package evjson

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"maps"
	"strings"
	"testing"
	"testing/iotest"
)

// FuzzExtract encodes a payload chosen by the fuzzer in one of the ways
// the provider may write it, and checks that exactly that payload comes
// out, or, for a body cut short or a limit below its size, that Extract
// and the callback's reader both fail.
func FuzzExtract(f *testing.F) {
	f.Add([]byte("\xff\xd8\xff\xe0 a photo"), uint32(0), uint16(0))
	f.Add([]byte("video bytes ???>>>"), uint32(1|3<<1|1<<4|5<<6), uint16(0))
	f.Add([]byte{0}, uint32(1<<10|1<<11|1<<12|1<<13), uint16(0))
	f.Add([]byte("ab"), uint32(2<<4|1<<6|2<<14|1<<16|1<<18), uint16(0))
	f.Add(payload(5000, 1), uint32(3<<4|20<<6|1<<17|3<<18), uint16(0))
	f.Add(payload(300, 2), uint32(1<<21), uint16(0))
	f.Add(payload(300, 3), uint32(1|1<<22), uint16(123))
	f.Add([]byte{}, uint32(0), uint16(0))
	f.Fuzz(func(t *testing.T, data []byte, flags uint32, cut uint16) {
		bit := func(n int) bool { return flags>>n&1 == 1 }
		o := encOpts{
			escapeSlash: bit(0),
			uEvery:      int(flags >> 1 & 7),
			lineEvery:   1 + int(flags>>6&15),
			noPad:       bit(11),
		}
		o.lineBreak = []string{"", `\r\n`, `\n`, "\r\n"}[flags>>4&3]
		if bit(10) {
			o.dataURL = "data:image/jpeg;base64,"
		}
		layout := bodyOpts{
			resultFirst: bit(12),
			videoFirst:  bit(13),
			nested:      int(flags >> 14 & 3),
			codeNumber:  bit(16),
			topLevel:    bit(17),
		}
		video := bytes.Repeat(data, 2)
		if len(data) > 0 {
			video = video[1:] // another length, another final quantum
		}
		body := syncBody(encode(data, o), encode(video, o), layout)
		var max int64
		if bit(21) && len(video) > 0 {
			max = int64(len(video)) - 1
		}
		truncated := bit(22)
		if truncated {
			body = body[:int(cut)%len(body)]
		}
		wrap := readers[flags>>18&3].wrap

		g := run(body, max, wrap)
		switch {
		case truncated || max > 0:
			if g.err == nil {
				t.Fatalf("Extract(truncated %v, max %d) error = nil, want an error", truncated, max)
			}
			want := map[string][]byte{"photo": data, "video": video}
			for kind, err := range g.readErr {
				if err == nil && (!bytes.Equal(g.files[kind], want[kind]) || int64(len(g.files[kind])) > max && max > 0) {
					t.Fatalf("Extract(truncated %v, max %d): %s reader ended cleanly after %d of %d bytes",
						truncated, max, kind, len(g.files[kind]), len(want[kind]))
				}
			}
		case g.err != nil:
			t.Fatalf("Extract(%d bytes, flags %#x) error = %v, want nil", len(data), flags, g.err)
		default:
			for kind, want := range map[string][]byte{"photo": data, "video": video} {
				got, called := g.files[kind]
				if called != (len(want) > 0) || !bytes.Equal(got, want) {
					t.Fatalf("Extract(flags %#x) %s = %d bytes (called %v), want the %d bytes encoded", flags, kind, len(got), called, len(want))
				}
			}
			if g.fields.Top["code"] != "0" || g.fields.Result["orderNo"] != "ord0001" {
				t.Fatalf("Extract(flags %#x) code %q, orderNo %q; want %q, %q", flags, g.fields.Top["code"], g.fields.Result["orderNo"], "0", "ord0001")
			}
		}
	})
}

// FuzzExtractBody feeds arbitrary bodies and compares Extract with a
// reference built on encoding/json: the same fields, the same files, and an
// error of the same kind.
func FuzzExtractBody(f *testing.F) {
	seeds := []string{
		syncBody(encode([]byte("photo"), encOpts{escapeSlash: true}), encode([]byte("a video"), encOpts{lineEvery: 4, lineBreak: `\r\n`}), bodyOpts{}),
		syncBody("data:image/png;base64,iVBORw0KGgo=", "AAAA", bodyOpts{resultFirst: true, codeNumber: true, nested: 2}),
		`{"code":"0","result":{"photo":"QUJD*","video":""}}`,
		`{"photo":"","result":{"photo":"QUJD","x":{"photo":"REVG"}},"photo":"R0hJ"}`,
		`{"a":[1,-2.5e3,true,false,null,{"b":"\ud83d\ude00\ud800"}],"code":0,"result":{"n":1e5}}`,
		`{"result":{"video":"QQ"},"code":"0"}`,
		`{"result":{"video":"QQ=="},"code":"0"}`,
		`{"result":{"video":"\u0051\u0051=\u003d"}}`,
		`{"result":{"photo":"QUJD"`,
		`[]`, `{}`, `{"photo":null}`, ``,
	}
	for i, s := range seeds {
		f.Add([]byte(s), uint8(i%3*7))
	}
	f.Fuzz(func(t *testing.T, body []byte, max uint8) {
		var files map[string][]byte
		fields, err := Extract(bytes.NewReader(body), int64(max), func(kind string, r io.Reader) error {
			b, err := io.ReadAll(r)
			if files == nil {
				files = map[string][]byte{}
			}
			files[kind] = b
			return err
		})
		// Extract reads the same way through a one-byte reader.
		fields1, err1 := Extract(iotest.OneByteReader(bytes.NewReader(body)), int64(max), nil)
		if (err == nil) != (err1 == nil) || err == nil && !fieldsEqual(fields, fields1) {
			t.Fatalf("Extract() = %v, %v; through one-byte reads = %v, %v", fields, err, fields1, err1)
		}

		if !json.Valid(body) {
			// Raw line breaks and tabs are let through in evidence text.
			if err == nil && !bytes.ContainsAny(body, "\r\n\t") {
				t.Fatalf("Extract(%q) error = nil for invalid JSON", body)
			}
			return
		}
		want := reference(t, body, int64(max))
		switch {
		case want.err == nil && err != nil:
			t.Fatalf("Extract(%q) error = %v, want nil", body, err)
		case want.err != nil && !errors.Is(err, want.err) && !(want.err == ErrBase64 && errors.Is(err, ErrTooLarge)):
			t.Fatalf("Extract(%q) error = %v, want %v", body, err, want.err)
		case want.err == nil:
			if !fieldsEqual(fields, &want.fields) {
				t.Fatalf("Extract(%q) fields = %v, want %v", body, fields, want.fields)
			}
			if !maps.EqualFunc(files, want.files, bytes.Equal) {
				t.Fatalf("Extract(%q) files = %q, want %q", body, files, want.files)
			}
		}
	})
}

func fieldsEqual(a, b *Fields) bool {
	return maps.Equal(a.Top, b.Top) && maps.Equal(a.Result, b.Result)
}

type refOutcome struct {
	fields Fields
	files  map[string][]byte
	err    error
}

// reference is what Extract should give for valid JSON, worked out from
// encoding/json's tokens and base64 decoding of whole strings.
func reference(t *testing.T, body []byte, max int64) refOutcome {
	out := refOutcome{fields: Fields{Top: map[string]string{}, Result: map[string]string{}}}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	type frame struct {
		object, inResult bool
		key              string
		wantKey          bool
	}
	var stack []frame
	seen := map[string]bool{}
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("reference: encoding/json Token() = %v on valid JSON", err)
		}
		if len(stack) == 0 {
			if d, ok := tok.(json.Delim); !ok || d != '{' {
				out.err = ErrSyntax
				return out
			}
			stack = append(stack, frame{object: true, wantKey: true})
			continue
		}
		top := &stack[len(stack)-1]
		if d, ok := tok.(json.Delim); ok && (d == '}' || d == ']') {
			stack = stack[:len(stack)-1]
			if len(stack) > 0 && stack[len(stack)-1].object {
				stack[len(stack)-1].wantKey = true
			}
			continue
		}
		if top.object && top.wantKey {
			top.key, top.wantKey = tok.(string), false
			continue
		}
		depth := len(stack)
		hasKey := top.object
		keep := hasKey && (depth == 1 || top.inResult)
		if top.object {
			top.wantKey = true
		}
		if d, ok := tok.(json.Delim); ok {
			if depth+1 > maxDepth {
				out.err = ErrSyntax
				return out
			}
			in := top.inResult || depth == 1 && hasKey && top.key == "result"
			stack = append(stack, frame{object: d == '{', inResult: in, wantKey: d == '{'})
			continue
		}
		if keep && (top.key == "photo" || top.key == "video") {
			if s, ok := tok.(string); ok && !seen[top.key] {
				data, present, err := refDecode(s, max)
				if err != nil {
					out.err = err
					return out
				}
				if present {
					seen[top.key] = true
					if out.files == nil {
						out.files = map[string][]byte{}
					}
					out.files[top.key] = data
				}
			}
			continue
		}
		if !keep {
			continue
		}
		var v string
		switch x := tok.(type) {
		case string:
			v = x
		case json.Number:
			v = x.String()
		case bool:
			v = map[bool]string{true: "true", false: "false"}[x]
		case nil:
			v = "null"
		}
		m := out.fields.Result
		if depth == 1 {
			m = out.fields.Top
		}
		if _, dup := m[top.key]; !dup {
			m[top.key] = v
		}
	}
}

// refDecode decodes a whole photo or video string the way Extract streams it.
func refDecode(s string, max int64) (data []byte, present bool, err error) {
	t := strings.Map(func(r rune) rune {
		if r == ' ' || r == '\t' || r == '\r' || r == '\n' {
			return -1
		}
		return r
	}, s)
	if hasPrefixFold([]byte(t), "data:") {
		i := strings.IndexByte(t, ',')
		if i < 0 || !hasSuffixFold([]byte(t[:i]), ";base64") || !printable([]byte(t[:i])) {
			return nil, false, ErrBase64
		}
		t = t[i+1:]
	}
	if t == "" {
		return nil, false, nil
	}
	rest := len(t) % 4
	if rest == 1 || rest > 0 && strings.Contains(t, "=") {
		return nil, false, ErrBase64
	}
	if rest > 0 {
		t += "=="[:4-rest]
	}
	data, err = base64.StdEncoding.Strict().DecodeString(t)
	if err != nil {
		return nil, false, ErrBase64
	}
	if max > 0 && int64(len(data)) > max {
		return nil, false, ErrTooLarge
	}
	return data, true, nil
}
