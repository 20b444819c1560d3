package idasctest

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/facesync/facesync/worker/idasc"
)

// decodeField returns the decoded base64 of a result field.
func decodeField(a answer, field string) ([]byte, error) {
	s := a.result(field)
	if s == "<missing>" {
		return nil, errors.New("missing")
	}
	return base64.StdEncoding.DecodeString(s)
}

// checkEvidence checks that the photo and video of a match what Evidence
// reports for the order.
func checkEvidence(t *testing.T, s *Server, a answer, orderNo string) {
	t.Helper()
	for _, kind := range []string{idasc.KindPhoto, idasc.KindVideo} {
		ct, size, sum := s.Evidence(testApp, orderNo, kind)
		b, err := decodeField(a, kind)
		if err != nil {
			t.Errorf("%s of %s: %v", kind, orderNo, err)
			continue
		}
		got := sha256.Sum256(b)
		if int64(len(b)) != size || hex.EncodeToString(got[:]) != sum {
			t.Errorf("%s of %s: %d bytes, sha256 %x; Evidence says %d bytes, sha256 %s", kind, orderNo, len(b), got, size, sum)
		}
		// Too few bytes hold no complete signature to sniff.
		if sniffed := http.DetectContentType(b); size >= 32 && !strings.HasPrefix(sniffed, ct) {
			t.Errorf("%s of %s sniffs as %q, Evidence says %q", kind, orderNo, sniffed, ct)
		}
	}
}

func TestEvidenceMatchesAnswers(t *testing.T) {
	t.Parallel()
	s := setup(t, Options{EvidenceDelay: -1}, nil)
	tk := credentials(t, s)
	tests := []Scenario{
		{},
		{PhotoFormat: FormatPNG, PhotoSize: 1, VideoSize: 2},
		{PhotoFormat: FormatBin, VideoFormat: FormatBin, PhotoSize: 3, VideoSize: 4},
		{PhotoSize: 23, VideoSize: 24}, // shorter than, then as long as a JPEG's signatures
		{PhotoSize: 25, VideoSize: 26},
		{PhotoSize: genChunk - 1, VideoSize: genChunk + 1},
		{PhotoSize: 3*genChunk + 5, VideoSize: 100003, EscapeSlashes: true, LineBreaks: true},
		{PhotoFormat: FormatPNG, PhotoSize: 40<<10 + 1, ResultFirst: true, CodeAsNumber: true},
		{PhotoFormat: FormatBin, VideoFormat: FormatBin, PhotoSize: 1000, VideoSize: 1000},
	}
	for i, sc := range tests {
		orderNo := fmt.Sprintf("ord%d", i)
		s.SetScenario(testApp, orderNo, sc)
		checkEvidence(t, s, syncOnce(t, s, tk, orderNo, "1"), orderNo)
	}
}

func TestEvidence(t *testing.T) {
	t.Parallel()
	f := New(Options{})
	tests := []struct {
		orderNo, kind string
		ct            string
		size          int64
	}{
		{"ord1", idasc.KindPhoto, "image/jpeg", DefaultPhotoSize},
		{"ord1", idasc.KindVideo, "video/mp4", DefaultVideoSize},
		{"ord1-png-p1k", idasc.KindPhoto, "image/png", 1 << 10},
		{"ord1-pbin", idasc.KindPhoto, "application/octet-stream", DefaultPhotoSize},
		{"ord1-vbin-v3m", idasc.KindVideo, "application/octet-stream", 3 << 20},
		{"ord1-nop", idasc.KindPhoto, "", 0},
		{"ord1-nov", idasc.KindVideo, "", 0},
		{"ord1", "manifest", "", 0},
	}
	for _, tt := range tests {
		ct, size, sum := f.Evidence(testApp, tt.orderNo, tt.kind)
		if ct != tt.ct || size != tt.size || (size > 0) != (len(sum) == 64) {
			t.Errorf("Evidence(%q, %q) = %q, %d, %q; want %q, %d and a hash when not empty", tt.orderNo, tt.kind, ct, size, sum, tt.ct, tt.size)
		}
	}
	// Same bytes every time and in a new fake; different per order and kind.
	_, _, a := f.Evidence(testApp, "ord1", idasc.KindPhoto)
	_, _, b := New(Options{}).Evidence(testApp, "ord1", idasc.KindPhoto)
	_, _, c := f.Evidence(testApp, "ord2", idasc.KindPhoto)
	_, _, d := f.Evidence("TIDA0002", "ord1", idasc.KindPhoto)
	if a != b || a == c || a == d {
		t.Errorf("Evidence hashes for ord1, ord1 in a new fake, ord2, another app = %s, %s, %s, %s; want the first two equal, the others different", a, b, c, d)
	}
	// SetScenario changes what Evidence reports.
	f.SetScenario(testApp, "ord1", Scenario{PhotoSize: 10})
	if _, size, _ := f.Evidence(testApp, "ord1", idasc.KindPhoto); size != 10 {
		t.Errorf("Evidence after SetScenario size = %d, want 10", size)
	}
}

// shortWriter records its writes and fails after limit bytes.
type shortWriter struct {
	bytes.Buffer
	limit int
}

func (w *shortWriter) Write(p []byte) (int, error) {
	if w.Len()+len(p) > w.limit {
		return 0, io.ErrShortWrite
	}
	return w.Buffer.Write(p)
}

func TestStreamWriters(t *testing.T) {
	t.Parallel()
	e, _ := newEvidenceSpec(testApp, "ord1", idasc.KindVideo, Scenario{VideoSize: 1000})
	var plain bytes.Buffer
	if _, err := e.WriteTo(&plain); err != nil {
		t.Fatal(err)
	}
	want := base64.StdEncoding.EncodeToString(plain.Bytes())

	tests := []struct {
		name             string
		s                Scenario
		corruptAt, cutAt int64
		want             string
		wantErr          error
	}{
		{"plain", Scenario{}, -1, -1, want, nil},
		{"escaped", Scenario{EscapeSlashes: true}, -1, -1, strings.ReplaceAll(want, "/", `\/`), nil},
		{"line breaks", Scenario{LineBreaks: true}, -1, -1, wrap(want), nil},
		{"corrupt first", Scenario{}, 0, -1, "*" + want[1:], nil},
		{"corrupt mid", Scenario{}, 700, -1, want[:700] + "*" + want[701:], nil},
		{"cut", Scenario{}, -1, 10, want[:10], errCut},
		{"cut at once", Scenario{}, -1, 0, "", errCut},
		{"corrupt and cut", Scenario{}, 5, 10, want[:5] + "*" + want[6:10], errCut},
	}
	for _, tt := range tests {
		var got bytes.Buffer
		err := streamBase64(&got, e, tt.s, tt.corruptAt, tt.cutAt)
		if got.String() != tt.want || !errors.Is(err, tt.wantErr) {
			t.Errorf("streamBase64(%s) = %.40q, %v; want %.40q, %v", tt.name, got.String(), err, tt.want, tt.wantErr)
		}
	}

	// A failing destination ends the stream with its error.
	w := &shortWriter{limit: 100}
	if err := streamBase64(w, e, Scenario{EscapeSlashes: true, LineBreaks: true}, -1, -1); !errors.Is(err, io.ErrShortWrite) {
		t.Errorf("streamBase64 to a failing writer = %v, want %v", err, io.ErrShortWrite)
	}
}

// wrap breaks s into lines of 76 characters joined by an escaped CRLF.
func wrap(s string) string {
	var lines []string
	for len(s) > 76 {
		lines = append(lines, s[:76])
		s = s[76:]
	}
	return strings.Join(append(lines, s), `\r\n`)
}

func TestLineBreakerSplitWrites(t *testing.T) {
	t.Parallel()
	in := strings.Repeat("ABCDEFGHIJ", 40)
	for _, chunk := range []int{1, 7, 75, 76, 77, 400} {
		var out bytes.Buffer
		lb := &lineBreaker{w: &out}
		for p := in; len(p) > 0; {
			n := min(chunk, len(p))
			if _, err := lb.Write([]byte(p[:n])); err != nil {
				t.Fatal(err)
			}
			p = p[n:]
		}
		if got := out.String(); got != wrap(in) {
			t.Errorf("lineBreaker with writes of %d = %.80q, want %.80q", chunk, got, wrap(in))
		}
	}
}
