package idasctest

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"io"
	"sync"

	"github.com/facesync/facesync/worker/idasc"
)

// Signatures at the start (and end) of generated evidence, enough for
// content sniffing (net/http.DetectContentType included) to name the type.
var (
	jpegHeader  = []byte("\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00")
	jpegTrailer = []byte("\xff\xd9")
	pngHeader   = []byte("\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR")
	// An ftyp box of 24 bytes: major brand isom, compatible isom and mp42.
	mp4Header = []byte("\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isommp42")
	binHeader = []byte("FSBIN\x00\x01\x02")
)

// evidenceSpec describes one generated evidence file. Its bytes are a pure
// function of the spec, so they can be streamed any number of times and
// hashed once without ever being held in memory.
type evidenceSpec struct {
	key         string // app, order, kind, format and size: the cache key of the hash
	seed        uint64
	size        int64
	contentType string
	header      []byte
	trailer     []byte
}

// newEvidenceSpec returns the spec of the given kind for an order under s,
// and false when the scenario sends no file of that kind.
func newEvidenceSpec(appID, orderNo, kind string, s Scenario) (evidenceSpec, bool) {
	var format string
	var n int64
	switch kind {
	case idasc.KindPhoto:
		if s.NoPhoto {
			return evidenceSpec{}, false
		}
		format, n = s.PhotoFormat, s.PhotoSize
		if format != FormatPNG && format != FormatBin {
			format = FormatJPEG
		}
		if n <= 0 {
			n = DefaultPhotoSize
		}
	case idasc.KindVideo:
		if s.NoVideo {
			return evidenceSpec{}, false
		}
		format, n = s.VideoFormat, s.VideoSize
		if format != FormatBin {
			format = FormatMP4
		}
		if n <= 0 {
			n = DefaultVideoSize
		}
	default:
		return evidenceSpec{}, false
	}
	e := evidenceSpec{size: n}
	switch format {
	case FormatJPEG:
		e.contentType, e.header, e.trailer = "image/jpeg", jpegHeader, jpegTrailer
	case FormatPNG:
		e.contentType, e.header = "image/png", pngHeader
	case FormatMP4:
		e.contentType, e.header = "video/mp4", mp4Header
	default:
		e.contentType, e.header = "application/octet-stream", binHeader
	}
	e.key = appID + "\x00" + orderNo + "\x00" + kind + "\x00" + format
	sum := sha256.Sum256([]byte(e.key))
	e.seed = binary.LittleEndian.Uint64(sum[:8])
	e.key += "\x00" + string(binary.LittleEndian.AppendUint64(nil, uint64(n)))
	return e, true
}

// b64Len is the length of the padded standard base64 encoding of the file.
func (e evidenceSpec) b64Len() int64 { return (e.size + 2) / 3 * 4 }

const genChunk = 32 << 10 // a multiple of 8, so the generator state stays aligned

var genBufs = sync.Pool{New: func() any { return new([genChunk]byte) }}

// WriteTo streams the file to w in chunks of genChunk bytes.
func (e evidenceSpec) WriteTo(w io.Writer) (int64, error) {
	bufp := genBufs.Get().(*[genChunk]byte)
	defer genBufs.Put(bufp)
	buf := bufp[:]
	state := e.seed
	hasTrailer := e.size >= int64(len(e.header)+len(e.trailer))
	trailerAt := e.size - int64(len(e.trailer))
	var off int64
	for off < e.size {
		n := int64(len(buf))
		if rest := e.size - off; rest < n {
			n = rest
		}
		chunk := buf[:n]
		// splitmix64: fast, and good enough that the bytes do not compress.
		for i := 0; i < len(chunk); i += 8 {
			state += 0x9e3779b97f4a7c15
			z := state
			z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
			z = (z ^ (z >> 27)) * 0x94d049bb133111eb
			z ^= z >> 31
			if len(chunk)-i >= 8 {
				binary.LittleEndian.PutUint64(chunk[i:], z)
			} else {
				var tail [8]byte
				binary.LittleEndian.PutUint64(tail[:], z)
				copy(chunk[i:], tail[:])
			}
		}
		if off < int64(len(e.header)) {
			copy(chunk, e.header[off:])
		}
		if hasTrailer && off+n > trailerAt {
			for i := max(trailerAt, off); i < off+n; i++ {
				chunk[i-off] = e.trailer[i-trailerAt]
			}
		}
		m, err := w.Write(chunk)
		off += int64(m)
		if err != nil {
			return off, err
		}
	}
	return off, nil
}

// sumCache remembers the SHA-256 of each generated file, computed once by
// streaming it through the hash.
type sumCache struct {
	mu   sync.Mutex
	sums map[string]*sumEntry
}

type sumEntry struct {
	once sync.Once
	hex  string
}

func (c *sumCache) sum(e evidenceSpec) string {
	c.mu.Lock()
	if c.sums == nil {
		c.sums = make(map[string]*sumEntry)
	}
	ent := c.sums[e.key]
	if ent == nil {
		ent = new(sumEntry)
		c.sums[e.key] = ent
	}
	c.mu.Unlock()
	ent.once.Do(func() {
		h := sha256.New()
		_, _ = e.WriteTo(h) // a hash.Hash never returns an error from Write
		ent.hex = hex.EncodeToString(h.Sum(nil))
	})
	return ent.hex
}

// errCut ends an evidence stream that a scenario truncates.
var errCut = errors.New("answer cut by scenario")

// streamBase64 writes the base64 of e to w with the scenario's quirks:
// the character at corruptAt (if >= 0) replaced by one outside the base64
// alphabet, output stopped with errCut after cutAt base64 characters (if
// >= 0), line breaks, escaped slashes.
func streamBase64(w io.Writer, e evidenceSpec, s Scenario, corruptAt, cutAt int64) error {
	if s.EscapeSlashes {
		w = &slashEscaper{w: w}
	}
	if s.LineBreaks {
		w = &lineBreaker{w: w}
	}
	if corruptAt >= 0 || cutAt >= 0 {
		w = &b64Tamper{w: w, corruptAt: corruptAt, cutAt: cutAt}
	}
	enc := base64.NewEncoder(base64.StdEncoding, w)
	if _, err := e.WriteTo(enc); err != nil {
		return err
	}
	return enc.Close()
}

// slashEscaper writes "/" as the JSON escape "\/".
type slashEscaper struct{ w io.Writer }

func (s *slashEscaper) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '/')
		if i < 0 {
			if _, err := s.w.Write(p); err != nil {
				return 0, err
			}
			break
		}
		if _, err := s.w.Write(p[:i]); err != nil {
			return 0, err
		}
		if _, err := io.WriteString(s.w, `\/`); err != nil {
			return 0, err
		}
		p = p[i+1:]
	}
	return n, nil
}

// b64LineLen is the MIME line length of base64 text.
const b64LineLen = 76

// lineBreaker inserts an escaped "\r\n" between lines of b64LineLen
// characters (none after the last line).
type lineBreaker struct {
	w   io.Writer
	col int
}

func (l *lineBreaker) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		if l.col == b64LineLen {
			if _, err := io.WriteString(l.w, `\r\n`); err != nil {
				return 0, err
			}
			l.col = 0
		}
		k := min(b64LineLen-l.col, len(p))
		if _, err := l.w.Write(p[:k]); err != nil {
			return 0, err
		}
		l.col += k
		p = p[k:]
	}
	return n, nil
}

// b64Tamper corrupts one character and/or cuts the stream, counting
// positions in the plain base64 text.
type b64Tamper struct {
	w         io.Writer
	off       int64
	corruptAt int64
	cutAt     int64
}

func (t *b64Tamper) Write(p []byte) (int, error) {
	n := len(p)
	cut := false
	if t.cutAt >= 0 && t.off+int64(len(p)) > t.cutAt {
		p = p[:max(t.cutAt-t.off, 0)]
		cut = true
	}
	if i := t.corruptAt - t.off; t.corruptAt >= 0 && i >= 0 && i < int64(len(p)) {
		if _, err := t.w.Write(p[:i]); err != nil {
			return 0, err
		}
		if _, err := io.WriteString(t.w, "*"); err != nil {
			return 0, err
		}
		p = p[i+1:]
		t.off += i + 1
	}
	if _, err := t.w.Write(p); err != nil {
		return 0, err
	}
	t.off += int64(len(p))
	if cut {
		return 0, errCut
	}
	return n, nil
}
