package evjson

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"
)

// Strict decoding rejects non-zero bits after the last byte, which a
// string cut short without its padding usually leaves behind.
var (
	stdEncoding = base64.StdEncoding.Strict()
	rawEncoding = base64.RawStdEncoding.Strict()
)

// Sizes of the evidence buffers: the base64 text gathered from the body and
// the bytes decoded from it. encSize is a multiple of 4.
const (
	encSize = 64 << 10
	outSize = encSize / 4 * 3
)

// evReader decodes one photo or video string for the callback's reader. It
// pulls the text through the scanner, unescapes it into enc, decodes whole
// quanta into outBuf and hands those out. It holds at most encSize bytes of
// text and outSize decoded bytes, whatever the size of the file; the parser
// reuses it, buffers and all, for the next file.
type evReader struct {
	s        *scanner
	kind     string
	max      int64
	enc      []byte // gathered base64 text, cap encSize
	outBuf   []byte // cap outSize
	out      []byte // decoded bytes not yet handed out, within outBuf
	n        int64  // decoded bytes so far
	ended    bool   // the closing quote is consumed
	finished bool   // all the text is decoded
	padded   bool   // a padded quantum was decoded: nothing may follow
	dirty    bool   // raw whitespace was seen: compact before decoding
	err      error  // sticky
	quoteAt  int64  // body offset of the next '"', or -1 when not known
	scanned  int64  // body offset before which no '"' lies after the text read
}

func (e *evReader) reset(kind string, max int64) {
	*e = evReader{s: e.s, kind: kind, max: max, enc: e.enc[:0], outBuf: e.outBuf, quoteAt: -1}
}

// fileReader is what the callback gets: a handle on the parser's evReader
// that is cut when the callback returns, so a reader kept beyond that fails
// instead of reading the next file.
type fileReader struct {
	e    *evReader
	kind string
}

func (f *fileReader) closedError() error {
	return fmt.Errorf("evjson: %s reader used after its callback returned", f.kind)
}

// Read implements io.Reader. After the text is found invalid, truncated or
// too large, Read returns that error, never io.EOF.
func (f *fileReader) Read(p []byte) (int, error) {
	e := f.e
	if e == nil {
		return 0, f.closedError()
	}
	if len(p) == 0 {
		return 0, e.err
	}
	for len(e.out) == 0 {
		if err := e.produce(); err != nil {
			return 0, err
		}
	}
	n := copy(p, e.out)
	e.out = e.out[n:]
	return n, nil
}

// WriteTo implements io.WriterTo, so io.Copy writes the decoded chunks
// straight from the reader's buffer.
func (f *fileReader) WriteTo(w io.Writer) (int64, error) {
	e := f.e
	if e == nil {
		return 0, f.closedError()
	}
	var total int64
	for {
		if len(e.out) == 0 {
			if err := e.produce(); err == io.EOF {
				return total, nil
			} else if err != nil {
				return total, err
			}
			continue
		}
		n, err := w.Write(e.out)
		if n < 0 || n > len(e.out) {
			n, err = 0, errors.New("evjson: writer returned an impossible count")
		}
		total += int64(n)
		e.out = e.out[n:]
		if err != nil {
			return total, err
		}
		if len(e.out) > 0 {
			return total, io.ErrShortWrite
		}
	}
}

// produce decodes the next chunk into e.out, or returns io.EOF once all of
// the string is decoded. Other errors are sticky.
func (e *evReader) produce() error {
	if e.err != nil {
		return e.err
	}
	if e.finished {
		return io.EOF
	}
	if err := e.decode(); err != nil {
		if err != io.EOF {
			e.err = err
		}
		return err
	}
	return nil
}

// decode gathers text until enc is full or the string ends, and decodes it.
func (e *evReader) decode() error {
	for {
		if err := e.gather(); err != nil {
			return err
		}
		if e.dirty {
			e.compact()
		}
		if e.padded {
			// Padding ends the text: only whitespace may follow.
			if e.compact(); len(e.enc) > 0 {
				return e.invalid()
			}
		}
		if e.ended {
			return e.decodeLast()
		}
		n := len(e.enc) &^ 3
		if n == 0 {
			continue // compaction left too little: gather more
		}
		m, err := stdEncoding.Decode(e.outBuf, e.enc[:n])
		if err != nil {
			// The decoder skips raw CR and LF but not the count they
			// throw off, nor spaces and tabs: remove them and retry.
			if e.compact() {
				e.dirty = true
				continue
			}
			return e.invalid()
		}
		e.padded = lastSignificant(e.enc[:n]) == '='
		e.enc = e.enc[:copy(e.enc, e.enc[n:])]
		if err := e.emit(m); err != nil {
			return err
		}
		if m > 0 {
			return nil
		}
	}
}

// decodeLast decodes what is left once the closing quote is read. A final
// quantum of 2 or 3 characters without padding is accepted.
func (e *evReader) decodeLast() error {
	e.compact()
	e.finished = true
	rest := len(e.enc) % 4
	if rest == 1 || rest > 0 && bytes.IndexByte(e.enc, '=') >= 0 {
		return e.invalid()
	}
	full := len(e.enc) - rest
	m, err := stdEncoding.Decode(e.outBuf, e.enc[:full])
	if err != nil {
		return e.invalid()
	}
	if rest > 0 {
		k, err := rawEncoding.Decode(e.outBuf[m:], e.enc[full:])
		if err != nil {
			return e.invalid()
		}
		m += k
	}
	e.enc = e.enc[:0]
	if err := e.emit(m); err != nil {
		return err
	}
	if m == 0 {
		return io.EOF
	}
	return nil
}

// emit makes m freshly decoded bytes available, enforcing the size limit.
func (e *evReader) emit(m int) error {
	e.n += int64(m)
	if e.max > 0 && e.n > e.max {
		return fmt.Errorf("%s larger than %d bytes: %w", e.kind, e.max, ErrTooLarge)
	}
	e.out = e.outBuf[:m]
	return nil
}

func (e *evReader) invalid() error {
	return fmt.Errorf("%s text before offset %d: %w", e.kind, e.s.offset(), ErrBase64)
}

// gather unescapes string text into enc until enc is full or the closing
// quote is consumed. Escaped whitespace is dropped here; raw whitespace is
// copied and left to the decoder or to compact. Non-ASCII escapes become
// 0xFF, which no base64 alphabet holds.
//
// The next '"' is looked for once per buffer and remembered, so text with
// an escape every few dozen bytes (\/ or a line break) costs one short
// IndexByte per escape, in unescapeRun.
func (e *evReader) gather() error {
	s := e.s
	for !e.ended && len(e.enc) < cap(e.enc) {
		if s.pos == s.end && !s.fill() {
			return s.failure()
		}
		lim := s.end // the next '"' or the end of the buffer
		if e.quoteAt >= s.offset() {
			lim = int(e.quoteAt - s.base)
		} else if from := max(s.pos, int(e.scanned-s.base)); from < s.end {
			if q := bytes.IndexByte(s.buf[from:s.end], '"'); q >= 0 {
				lim = from + q
				e.quoteAt = s.base + int64(lim)
			} else {
				e.quoteAt = -1
				e.scanned = s.base + int64(s.end)
			}
		}
		seg := s.buf[s.pos:lim]
		if room := cap(e.enc) - len(e.enc); len(seg) > room {
			seg = seg[:room]
		}
		w, r := unescapeRun(e.enc[len(e.enc):cap(e.enc)], seg)
		e.enc = e.enc[:len(e.enc)+w]
		s.pos += r
		if r == len(seg) {
			if s.pos < s.end && s.offset() == e.quoteAt {
				s.pos++
				e.ended = true
			}
			continue
		}
		c, err := s.escape()
		if err != nil {
			return err
		}
		switch {
		case c < utf8.RuneSelf && isSpace(byte(c)):
		case c < utf8.RuneSelf:
			e.enc = append(e.enc, byte(c))
		default:
			e.enc = append(e.enc, 0xFF)
		}
	}
	return nil
}

// unescapeRun copies src to dst, turning \/ into / and dropping \n, \r and
// \t, the escapes base64 text carries, until it meets another escape or one
// cut by the end of src. dst must be at least as long as src. It returns
// how many bytes it wrote and read. Text escaped every few dozen bytes
// spends its time here, so this loop works on local slices only.
func unescapeRun(dst, src []byte) (w, r int) {
	for {
		j := bytes.IndexByte(src[r:], '\\')
		if j < 0 {
			return w + copy(dst[w:], src[r:]), len(src)
		}
		w += copy(dst[w:], src[r:r+j])
		r += j
		if r+1 >= len(src) {
			return w, r
		}
		switch src[r+1] {
		case '/':
			dst[w] = '/'
			w++
		case 'n', 'r', 't':
		default:
			return w, r
		}
		r += 2
	}
}

// compact removes whitespace from enc and reports whether there was any.
func (e *evReader) compact() bool {
	k := 0
	for _, c := range e.enc {
		if !isSpace(c) {
			e.enc[k] = c
			k++
		}
	}
	removed := k < len(e.enc)
	e.enc = e.enc[:k]
	return removed
}

// gatherCompact gathers and compacts until enc holds at least want bytes of
// text, the string has ended, or enc is full of text.
func (e *evReader) gatherCompact(want int) error {
	for len(e.enc) < want && !e.ended {
		full := len(e.enc) == cap(e.enc)
		if err := e.gather(); err != nil {
			return err
		}
		if !e.compact() && full {
			return nil
		}
	}
	return nil
}

// prime reads the start of the string: it drops a data URL header and
// reports whether any base64 text follows. When it does not, the whole
// string has been consumed.
func (e *evReader) prime() (present bool, err error) {
	if err := e.gatherCompact(len("data:")); err != nil {
		return false, err
	}
	if hasPrefixFold(e.enc, "data:") {
		i := bytes.IndexByte(e.enc, ',')
		for i < 0 && !e.ended && len(e.enc) < cap(e.enc) {
			if err := e.gatherCompact(cap(e.enc)); err != nil {
				return false, err
			}
			i = bytes.IndexByte(e.enc, ',')
		}
		if i < 0 || !hasSuffixFold(e.enc[:i], ";base64") || !printable(e.enc[:i]) {
			return false, fmt.Errorf("%s is a data URL without a base64 payload: %w", e.kind, ErrBase64)
		}
		e.enc = e.enc[:copy(e.enc, e.enc[i+1:])]
		if err := e.gatherCompact(1); err != nil {
			return false, err
		}
	}
	if len(e.enc) == 0 {
		e.finished = true
		return false, nil
	}
	return true, nil
}

// drain decodes and discards what the callback left unread, so the text is
// still checked in full.
func (e *evReader) drain() error {
	e.out = nil
	for {
		if err := e.produce(); err == io.EOF {
			return nil
		} else if err != nil {
			return err
		}
		e.out = nil
	}
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// lastSignificant returns the last non-whitespace byte of b, or 0.
func lastSignificant(b []byte) byte {
	for i := len(b) - 1; i >= 0; i-- {
		if !isSpace(b[i]) {
			return b[i]
		}
	}
	return 0
}

// printable reports whether b is all visible ASCII, as a data URL header
// is; this also keeps raw control characters, which JSON forbids, from
// passing unseen.
func printable(b []byte) bool {
	for _, c := range b {
		if c <= ' ' || c > '~' {
			return false
		}
	}
	return true
}

func hasPrefixFold(b []byte, prefix string) bool {
	return len(b) >= len(prefix) && bytes.EqualFold(b[:len(prefix)], []byte(prefix))
}

func hasSuffixFold(b []byte, suffix string) bool {
	return len(b) >= len(suffix) && bytes.EqualFold(b[len(b)-len(suffix):], []byte(suffix))
}
