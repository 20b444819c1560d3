package idasctest

import (
	"bytes"
	"encoding/json"
)

// jsonWriter builds JSON objects member by member, in the order written, so
// the fake controls what encoding/json would not: member order, numbers
// written as strings or not, "\/" escapes. Large values are streamed by the
// caller between take calls.
type jsonWriter struct {
	buf       []byte
	escSlash  bool
	needComma bool
}

func (j *jsonWriter) begin() {
	j.buf = append(j.buf, '{')
	j.needComma = false
}

func (j *jsonWriter) end() {
	j.buf = append(j.buf, '}')
	j.needComma = true
}

func (j *jsonWriter) beginArray() {
	j.buf = append(j.buf, '[')
	j.needComma = false
}

func (j *jsonWriter) endArray() {
	j.buf = append(j.buf, ']')
	j.needComma = true
}

// key starts a member; its value follows.
func (j *jsonWriter) key(k string) {
	if j.needComma {
		j.buf = append(j.buf, ',')
	}
	j.buf = append(j.buf, j.quote(k)...)
	j.buf = append(j.buf, ':')
	j.needComma = false
}

func (j *jsonWriter) str(k, v string) {
	j.key(k)
	j.buf = append(j.buf, j.quote(v)...)
	j.needComma = true
}

// num writes v, which must be a valid JSON number, unquoted.
func (j *jsonWriter) num(k, v string) {
	j.key(k)
	j.buf = append(j.buf, v...)
	j.needComma = true
}

func (j *jsonWriter) boolean(k string, v bool) {
	j.key(k)
	if v {
		j.buf = append(j.buf, "true"...)
	} else {
		j.buf = append(j.buf, "false"...)
	}
	j.needComma = true
}

// openString starts a string member whose content the caller streams (as
// valid JSON string content) before calling closeString.
func (j *jsonWriter) openString(k string) {
	j.key(k)
	j.buf = append(j.buf, '"')
}

func (j *jsonWriter) closeString() {
	j.buf = append(j.buf, '"')
	j.needComma = true
}

// take returns what was written since the last take.
func (j *jsonWriter) take() []byte {
	b := j.buf
	j.buf = nil
	return b
}

func (j *jsonWriter) bytes() []byte { return j.buf }

// quote returns s as a JSON string, without the HTML escapes of
// json.Marshal and with "/" escaped when the writer asks for it.
func (j *jsonWriter) quote(s string) []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s) // encoding a string cannot fail
	q := bytes.TrimSuffix(b.Bytes(), []byte("\n"))
	if j.escSlash {
		// An encoded string holds "/" only as itself, never inside an
		// escape sequence, so every one can be escaped.
		q = bytes.ReplaceAll(q, []byte("/"), []byte(`\/`))
	}
	return q
}
