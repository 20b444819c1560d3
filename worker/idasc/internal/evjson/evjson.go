// Package evjson streams the photo and video out of a /api/server/sync
// answer. The provider sends them as base64 strings inside one JSON object,
// each possibly hundreds of megabytes; encoding/json would hold every string
// and its decoded copy. Extract reads the body once through fixed buffers
// (about 180 KiB per call) and hands each file, decoded, to a callback while
// it is being read.
package evjson

import (
	"errors"
	"fmt"
	"io"
)

// Errors wrapped by the errors Extract and the evidence readers return.
var (
	// ErrSyntax means the body is not one well-formed JSON object, including
	// a body cut short anywhere, before or after the evidence.
	ErrSyntax = errors.New("evjson: malformed JSON")
	// ErrBase64 means a photo or video string is not valid base64.
	ErrBase64 = errors.New("evjson: invalid base64")
	// ErrTooLarge means a decoded photo or video exceeds the size limit.
	ErrTooLarge = errors.New("evjson: evidence file too large")
)

// Evidence kinds, as passed to the callback. They match idasc.KindPhoto and
// idasc.KindVideo, which this package cannot import.
const (
	kindPhoto = "photo"
	kindVideo = "video"
)

// Limits that keep a hostile or odd body from costing memory.
const (
	bufSize        = 64 << 10 // the body read window
	maxDepth       = 64       // nesting of objects and arrays
	maxFieldBytes  = 64 << 10 // longest key or scalar kept in Fields
	maxFieldsBytes = 1 << 20  // all keys and scalars kept in Fields, 32 bytes a field added
)

// Fields holds the small fields of the answer as text: strings unescaped
// (invalid UTF-8 replaced by U+FFFD, as encoding/json does), numbers as
// their literal text, and true, false and null as those words.
//
// Top holds the scalars of the top-level object. Result holds the scalars
// found at any depth under the top-level "result", flattened by their own
// key. Where a key repeats, the first value wins. Photo and video strings
// are not included. A key or value longer than 64 KiB, or beyond about
// 1 MiB of kept text in all, is checked but left out, so that a large field
// the provider may add one day costs no memory.
type Fields struct {
	Top    map[string]string
	Result map[string]string
}

// Extract reads a /api/server/sync answer from r, once, and returns its
// small fields. Each photo or video string found at the top level or at any
// depth under "result" is decoded from base64 and handed to fn, with kind
// "photo" or "video", as a reader that yields the decoded bytes while the
// body is being read. Only the first photo and the first video that hold
// any base64 text are handed over; later ones are checked as JSON only.
// A string with no base64 text (empty, only whitespace, or a data URL
// header alone) or null means the file is absent: fn is not called for it.
//
// The text may carry JSON escapes (\/, \u002F and the like), escaped or raw line breaks,
// tabs and spaces (ignored), a "data:...;base64," header, and may omit its
// final padding. Anything else that is not standard base64 is an error
// wrapping ErrBase64; a decoded file over maxBytes (when maxBytes > 0) is an
// error wrapping ErrTooLarge; a body that is not one well-formed JSON object
// is an error wrapping ErrSyntax, as is nesting deeper than 64 levels. The
// reader fn gets returns such an error, never io.EOF, as soon as it is
// found, so a consumer that stops at the first error never keeps a
// corrupted file as complete; a read error from r is returned too. The
// reader is valid only until fn returns.
//
// If fn returns nil without reading its file to the end, Extract decodes
// and discards the rest, still checking it, so an invalid or oversize tail
// still fails the call. If fn returns an error, Extract stops and returns
// it wrapped, together with the reader's own error if that differs. With a
// nil fn the files are checked and discarded.
//
// On error the Fields are nil. Extract does not close r.
func Extract(r io.Reader, maxBytes int64, fn func(kind string, r io.Reader) error) (*Fields, error) {
	p := &parser{
		s:      scanner{r: r, buf: make([]byte, bufSize)},
		fields: Fields{Top: map[string]string{}, Result: map[string]string{}},
		max:    maxBytes,
		fn:     fn,
	}
	p.ev.s = &p.s
	c, err := p.s.nonSpace()
	if err != nil {
		return nil, err
	}
	if c != '{' {
		return nil, p.s.syntaxError("body is not a JSON object")
	}
	p.s.pos++
	if err := p.object(1, false); err != nil {
		return nil, err
	}
	for {
		c, ok, err := p.s.peek()
		if err != nil {
			return nil, err
		}
		if !ok {
			// A copy, so the caller does not keep the buffers alive.
			fields := p.fields
			return &fields, nil
		}
		if !isSpace(c) {
			return nil, p.s.syntaxError("data after the JSON object")
		}
		p.s.pos++
	}
}

type parser struct {
	s      scanner
	fields Fields
	kept   int // of maxFieldsBytes, spent on fields
	max    int64
	fn     func(kind string, r io.Reader) error
	ev     evReader
	seen   [2]bool // photo, video handed over
	key    []byte  // scratch for the current key
	str    []byte  // scratch for the current scalar
}

// object parses the members of an object whose '{' is consumed. depth is
// its nesting level, 1 for the top-level object; inResult says it lies under
// the top-level "result".
func (p *parser) object(depth int, inResult bool) error {
	if depth > maxDepth {
		return p.s.syntaxError("nesting too deep")
	}
	c, err := p.s.nonSpace()
	if err != nil {
		return err
	}
	if c == '}' {
		p.s.pos++
		return nil
	}
	for {
		if c != '"' {
			return p.s.syntaxError("expected a string key")
		}
		p.s.pos++
		key, keyKept, err := p.s.readString(p.key, maxFieldBytes, false)
		if err != nil {
			return err
		}
		p.key = key[:0]
		if c, err = p.s.nonSpace(); err != nil {
			return err
		}
		if c != ':' {
			return p.s.syntaxError("expected ':' after a key")
		}
		p.s.pos++
		if c, err = p.s.nonSpace(); err != nil {
			return err
		}
		name := ""
		if keyKept {
			name = string(key)
		}
		if err := p.member(depth, inResult, name, keyKept, c); err != nil {
			return err
		}
		if c, err = p.s.nonSpace(); err != nil {
			return err
		}
		p.s.pos++
		switch c {
		case ',':
			if c, err = p.s.nonSpace(); err != nil {
				return err
			}
		case '}':
			return nil
		default:
			p.s.pos--
			return p.s.syntaxError("expected ',' or '}' in an object")
		}
	}
}

// array parses the elements of an array whose '[' is consumed.
func (p *parser) array(depth int, inResult bool) error {
	if depth > maxDepth {
		return p.s.syntaxError("nesting too deep")
	}
	c, err := p.s.nonSpace()
	if err != nil {
		return err
	}
	if c == ']' {
		p.s.pos++
		return nil
	}
	for {
		if err := p.member(depth, inResult, "", false, c); err != nil {
			return err
		}
		if c, err = p.s.nonSpace(); err != nil {
			return err
		}
		p.s.pos++
		switch c {
		case ',':
			if c, err = p.s.nonSpace(); err != nil {
				return err
			}
		case ']':
			return nil
		default:
			p.s.pos--
			return p.s.syntaxError("expected ',' or ']' in an array")
		}
	}
}

// member parses one value starting with c, the value of key in an object at
// depth (or an array element when hasKey is false), and keeps or streams it.
func (p *parser) member(depth int, inResult bool, key string, hasKey bool, c byte) error {
	top := depth == 1
	keep := hasKey && (top || inResult)
	if keep && (key == kindPhoto || key == kindVideo) {
		if c == '"' {
			p.s.pos++
			return p.evidence(key)
		}
		keep = false // not a file: null or something odd, kept nowhere
	}
	switch c {
	case '{':
		p.s.pos++
		return p.object(depth+1, inResult || top && hasKey && key == "result")
	case '[':
		p.s.pos++
		return p.array(depth+1, inResult || top && hasKey && key == "result")
	case '"':
		p.s.pos++
		limit := 0
		if keep {
			limit = maxFieldBytes
		}
		v, kept, err := p.s.readString(p.str, limit, false)
		if err != nil {
			return err
		}
		p.str = v[:0]
		if keep && kept {
			p.keepField(top, key, v)
		}
		return nil
	case 't':
		return p.literal("true", top, key, keep)
	case 'f':
		return p.literal("false", top, key, keep)
	case 'n':
		return p.literal("null", top, key, keep)
	}
	if c == '-' || '0' <= c && c <= '9' {
		v, err := p.number()
		if err != nil {
			return err
		}
		if keep && len(v) <= maxFieldBytes {
			p.keepField(top, key, v)
		}
		return nil
	}
	return p.s.syntaxError("expected a value")
}

// keepField records a scalar unless its key is taken or the budget is spent.
func (p *parser) keepField(top bool, key string, v []byte) {
	m := p.fields.Result
	if top {
		m = p.fields.Top
	}
	// Each entry is charged a map's overhead too, so that a flood of tiny
	// fields is bounded as well as a few big ones.
	cost := len(key) + len(v) + 32
	if _, dup := m[key]; dup || p.kept+cost > maxFieldsBytes {
		return
	}
	p.kept += cost
	m[key] = string(v)
}

func (p *parser) literal(word string, top bool, key string, keep bool) error {
	if !p.s.ensure(len(word)) {
		return p.s.failure()
	}
	if string(p.s.buf[p.s.pos:p.s.pos+len(word)]) != word {
		return p.s.syntaxError("invalid literal")
	}
	p.s.pos += len(word)
	if keep {
		p.keepField(top, key, []byte(word))
	}
	return nil
}

// number consumes a JSON number and returns its text. Text beyond
// maxFieldBytes is not kept: the returned slice is then longer than that
// limit only by a byte, which tells the caller to drop it.
func (p *parser) number() ([]byte, error) {
	v := p.str[:0]
	take := func() {
		if len(v) <= maxFieldBytes {
			v = append(v, p.s.buf[p.s.pos])
		}
		p.s.pos++
	}
	digits := func() (int, error) {
		n := 0
		for {
			c, ok, err := p.s.peek()
			if err != nil {
				return 0, err
			}
			if !ok || c < '0' || c > '9' {
				return n, nil
			}
			take()
			n++
		}
	}
	if p.s.buf[p.s.pos] == '-' {
		take()
	}
	c, ok, err := p.s.peek()
	if err != nil {
		return nil, err
	}
	switch {
	case !ok:
		return nil, p.s.failure()
	case c == '0':
		take()
	case '1' <= c && c <= '9':
		if _, err := digits(); err != nil {
			return nil, err
		}
	default:
		return nil, p.s.syntaxError("invalid number")
	}
	if c, ok, err = p.s.peek(); err != nil {
		return nil, err
	}
	if ok && c == '.' {
		take()
		if n, err := digits(); err != nil {
			return nil, err
		} else if n == 0 {
			return nil, p.numberEnd()
		}
		if c, ok, err = p.s.peek(); err != nil {
			return nil, err
		}
	}
	if ok && (c == 'e' || c == 'E') {
		take()
		if c, ok, err = p.s.peek(); err != nil {
			return nil, err
		} else if ok && (c == '+' || c == '-') {
			take()
		}
		if n, err := digits(); err != nil {
			return nil, err
		} else if n == 0 {
			return nil, p.numberEnd()
		}
	}
	p.str = v[:0]
	return v, nil
}

// numberEnd is the error for a number missing its digits: truncation when
// the body ends there, malformed JSON otherwise.
func (p *parser) numberEnd() error {
	if _, ok, err := p.s.peek(); err != nil {
		return err
	} else if !ok {
		return p.s.failure()
	}
	return p.s.syntaxError("invalid number")
}

// evidence streams a photo or video string whose opening quote is consumed.
func (p *parser) evidence(kind string) error {
	i := 0
	if kind == kindVideo {
		i = 1
	}
	if p.seen[i] {
		_, _, err := p.s.readString(nil, 0, true)
		return err
	}
	e := &p.ev
	if e.enc == nil {
		e.enc = make([]byte, 0, encSize)
		e.outBuf = make([]byte, outSize)
	}
	e.reset(kind, p.max)
	present, err := e.prime()
	if err != nil {
		return err
	}
	if !present {
		return nil
	}
	p.seen[i] = true
	var fnErr error
	if p.fn != nil {
		f := &fileReader{e: e, kind: kind}
		fnErr = p.fn(kind, f)
		f.e = nil
	}
	switch {
	case fnErr == nil && e.err == nil:
		return e.drain()
	case fnErr == nil:
		return e.err
	case e.err == nil || errors.Is(fnErr, e.err):
		return fmt.Errorf("evjson: %s callback: %w", kind, fnErr)
	default:
		return fmt.Errorf("evjson: %s callback: %w; reading %s: %w", kind, fnErr, kind, e.err)
	}
}
