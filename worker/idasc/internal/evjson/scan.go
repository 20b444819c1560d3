package evjson

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"unicode/utf16"
	"unicode/utf8"
)

// maxEmptyReads bounds how many (0, nil) answers in a row a reader may give
// before it is treated as broken, as bufio does, so Extract cannot spin.
const maxEmptyReads = 100

// scanner is a fixed-size window over the body. The window never grows:
// strings longer than it are consumed piece by piece.
type scanner struct {
	r        io.Reader
	buf      []byte
	pos, end int
	base     int64 // body offset of buf[0], for error messages
	err      error // sticky: io.EOF once the body is done, or the read error
}

// offset is the body offset of the next unread byte.
func (s *scanner) offset() int64 { return s.base + int64(s.pos) }

// fill reads more of the body after the unread bytes, moving them to the
// front first. It reports whether new bytes arrived; when not, s.err says why.
func (s *scanner) fill() bool {
	if s.err != nil {
		return false
	}
	if s.pos > 0 {
		copy(s.buf, s.buf[s.pos:s.end])
		s.base += int64(s.pos)
		s.end -= s.pos
		s.pos = 0
	}
	for empty := 0; empty < maxEmptyReads; empty++ {
		n, err := s.r.Read(s.buf[s.end:])
		if n < 0 || n > len(s.buf)-s.end {
			s.err = errors.New("reader returned an impossible count")
			return false
		}
		s.end += n
		if err != nil {
			s.err = err
			return n > 0
		}
		if n > 0 {
			return true
		}
	}
	s.err = io.ErrNoProgress
	return false
}

// ensure makes n unread bytes available unless the body ends first.
func (s *scanner) ensure(n int) bool {
	for s.end-s.pos < n {
		if !s.fill() {
			return false
		}
	}
	return true
}

// failure turns the sticky read state into the error to return when more
// input was needed: the end of the body there means truncated JSON.
func (s *scanner) failure() error {
	if s.err == nil || s.err == io.EOF {
		return fmt.Errorf("unexpected end of input at offset %d: %w", s.offset(), ErrSyntax)
	}
	return fmt.Errorf("evjson: read body: %w", s.err)
}

// syntaxError describes malformed JSON at the current offset. what never
// quotes body bytes: they may be personal data.
func (s *scanner) syntaxError(what string) error {
	return fmt.Errorf("%s at offset %d: %w", what, s.offset(), ErrSyntax)
}

// peek returns the next byte without consuming it; ok is false at the end
// of the body, err is set only for a read error.
func (s *scanner) peek() (c byte, ok bool, err error) {
	if s.pos == s.end && !s.fill() {
		if s.err == io.EOF {
			return 0, false, nil
		}
		return 0, false, s.failure()
	}
	return s.buf[s.pos], true, nil
}

// nonSpace skips JSON whitespace and returns the next byte, unconsumed.
func (s *scanner) nonSpace() (byte, error) {
	for {
		for s.pos < s.end {
			switch c := s.buf[s.pos]; c {
			case ' ', '\t', '\n', '\r':
				s.pos++
			default:
				return c, nil
			}
		}
		if !s.fill() {
			return 0, s.failure()
		}
	}
}

// indexSpecial returns the index of the first '"' or '\\' in b, or -1. It
// looks in growing windows so that finding a near quote costs little even
// when the buffer behind it is large, which keeps many short strings linear.
func indexSpecial(b []byte) int {
	w := 64
	for start := 0; start < len(b); w *= 2 {
		end := min(start+w, len(b))
		chunk := b[start:end]
		j := bytes.IndexByte(chunk, '\\')
		if j >= 0 {
			chunk = chunk[:j]
		}
		if q := bytes.IndexByte(chunk, '"'); q >= 0 {
			return start + q
		}
		if j >= 0 {
			return start + j
		}
		start = end
	}
	return -1
}

// escape decodes the escape sequence at s.pos (which holds '\\') and
// consumes it. A UTF-16 surrogate pair written as two \u escapes becomes one
// rune; a lone surrogate becomes U+FFFD, as encoding/json does.
func (s *scanner) escape() (rune, error) {
	if !s.ensure(2) {
		return 0, s.failure()
	}
	c := s.buf[s.pos+1]
	if c != 'u' {
		s.pos += 2
		switch c {
		case '"', '\\', '/':
			return rune(c), nil
		case 'b':
			return '\b', nil
		case 'f':
			return '\f', nil
		case 'n':
			return '\n', nil
		case 'r':
			return '\r', nil
		case 't':
			return '\t', nil
		}
		s.pos -= 2
		return 0, s.syntaxError("invalid escape")
	}
	if !s.ensure(6) {
		return 0, s.failure()
	}
	r := hex4(s.buf[s.pos+2 : s.pos+6])
	if r < 0 {
		return 0, s.syntaxError("invalid \\u escape")
	}
	s.pos += 6
	if !utf16.IsSurrogate(r) {
		return r, nil
	}
	// A following \u escape may complete the pair. When the body ends
	// here, the caller will find the truncation itself.
	if s.ensure(6) && s.buf[s.pos] == '\\' && s.buf[s.pos+1] == 'u' {
		if r2 := hex4(s.buf[s.pos+2 : s.pos+6]); r2 >= 0 {
			if d := utf16.DecodeRune(r, r2); d != utf8.RuneError {
				s.pos += 6
				return d, nil
			}
		}
	}
	return utf8.RuneError, nil
}

// hex4 decodes four hex digits, or returns -1.
func hex4(b []byte) rune {
	var r rune
	for _, c := range b[:4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return -1
		}
		r = r<<4 | rune(c)
	}
	return r
}

// readString consumes the rest of a string whose opening quote is already
// consumed and returns its unescaped text in dst's storage. Text longer
// than limit is scanned but not kept: kept is false. Raw control characters
// are malformed JSON unless lenient allows raw line breaks and tabs (for
// skipped evidence strings, which accept them as base64 line wrapping).
func (s *scanner) readString(dst []byte, limit int, lenient bool) (val []byte, kept bool, err error) {
	val, kept = dst[:0], true
	for {
		if s.pos == s.end && !s.fill() {
			return nil, false, s.failure()
		}
		seg := s.buf[s.pos:s.end]
		i := indexSpecial(seg)
		run := seg
		if i >= 0 {
			run = seg[:i]
		}
		for k, c := range run {
			if c < 0x20 && !(lenient && (c == '\r' || c == '\n' || c == '\t')) {
				s.pos += k
				return nil, false, s.syntaxError("control character in string")
			}
		}
		if kept {
			if len(val)+len(run) > limit {
				val, kept = val[:0], false
			} else {
				val = append(val, run...)
			}
		}
		s.pos += len(run)
		if i < 0 {
			continue
		}
		if seg[i] == '"' {
			s.pos++
			break
		}
		r, err := s.escape()
		if err != nil {
			return nil, false, err
		}
		if kept {
			if len(val)+utf8.RuneLen(r) > limit {
				val, kept = val[:0], false
			} else {
				val = utf8.AppendRune(val, r)
			}
		}
	}
	if kept && !utf8.Valid(val) {
		val = fixUTF8(val)
	}
	return val, kept, nil
}

// fixUTF8 replaces each byte that is not part of valid UTF-8 with U+FFFD,
// as encoding/json does, so that callers get the same text it would give.
func fixUTF8(b []byte) []byte {
	out := make([]byte, 0, len(b)+8)
	for len(b) > 0 {
		r, n := utf8.DecodeRune(b)
		out = utf8.AppendRune(out, r)
		b = b[n:]
	}
	return out
}
