package idasc

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"
	"unicode/utf8"
)

// flexString is a JSON scalar kept as text. The provider sends numbers
// either as JSON strings or as JSON numbers ("code":"0" or "code":0), so
// both decode to the same text; a number keeps its literal spelling and null
// leaves the value empty.
type flexString string

// UnmarshalJSON accepts a string, number, boolean or null; an object or
// array is an error.
func (s *flexString) UnmarshalJSON(b []byte) error {
	v, ok, err := scalarText(b)
	if err != nil {
		return err
	}
	if ok {
		*s = flexString(v)
	}
	return nil
}

var errNotScalar = errors.New("want a JSON string or number")

// scalarText returns the text of a JSON scalar: a string's contents or a
// number's or boolean's literal. ok is false for null. raw must be valid
// JSON, as encoding/json guarantees for RawMessage values and UnmarshalJSON
// arguments.
func scalarText(raw []byte) (text string, ok bool, err error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return "", false, errNotScalar
	}
	switch raw[0] {
	case '"':
		// Most values carry no escape: take them as they are, without
		// a decoder (one allocation instead of several).
		if n := len(raw); n >= 2 && raw[n-1] == '"' && bytes.IndexByte(raw[1:n-1], '\\') < 0 && utf8.Valid(raw[1:n-1]) {
			return string(raw[1 : n-1]), true, nil
		}
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", false, err
		}
		return s, true, nil
	case 'n':
		return "", false, nil
	case '{', '[':
		return "", false, errNotScalar
	}
	return string(raw), true, nil
}

// scalars returns the scalar members of a decoded JSON object as text,
// leaving out nulls, objects and arrays.
func scalars(obj map[string]json.RawMessage) map[string]string {
	out := make(map[string]string, len(obj))
	for k, raw := range obj {
		if v, ok, err := scalarText(raw); err == nil && ok {
			out[k] = v
		}
	}
	return out
}

// decodeSync decodes a sync answer read whole (one without evidence). Any
// member order is accepted, `result` may be missing or null, and members
// that are not needed may hold anything.
func decodeSync(body []byte) (*Result, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(body, &top); err != nil {
		return nil, fmt.Errorf("decode response: %w", err)
	}
	if top == nil {
		return nil, errors.New("decode response: not a JSON object")
	}
	var res map[string]json.RawMessage
	if raw := bytes.TrimSpace(top["result"]); len(raw) > 0 && raw[0] == '{' {
		if err := json.Unmarshal(raw, &res); err != nil {
			return nil, fmt.Errorf("decode result: %w", err)
		}
	}
	return resultFromFields(scalars(top), scalars(res))
}

// resultFromFields maps the scalar members of a sync answer (top level and
// `result`) to a Result. It is shared by the whole-body decoder and the
// streaming evidence decoder so both read the same fields the same way.
// result.success is ignored: the provider sets it unreliably.
func resultFromFields(top, result map[string]string) (*Result, error) {
	code := field(top, "code")
	if !validCode(code) {
		return nil, errors.New("decode response: missing or malformed code")
	}
	either := func(k string) string {
		if v := field(result, k); v != "" {
			return v
		}
		return field(top, k)
	}
	return &Result{
		Code:            code,
		Msg:             field(top, "msg"),
		OrderNo:         field(result, "orderNo"),
		BizSeqNo:        either("bizSeqNo"),
		TransactionTime: either("transactionTime"),
		OccurredTime:    field(result, "occurredTime"),
		LiveRate:        field(result, "liveRate"),
		Similarity:      field(result, "similarity"),
		IDNo:            field(result, "idNo"),
		IDType:          field(result, "idType"),
		Name:            field(result, "name"),
	}, nil
}

// field returns m[k], reading "null" as absent: the streaming decoder keeps
// a JSON null as that word, and no provider field means the word itself.
func field(m map[string]string, k string) string {
	if v := m[k]; v != "null" {
		return v
	}
	return ""
}

// validCode reports whether code looks like a provider code: digits, with
// an optional minus sign. Anything else (empty, a fraction, a word) means
// the answer is not one the classification table covers.
func validCode(code string) bool {
	if len(code) > 0 && code[0] == '-' {
		code = code[1:]
	}
	if code == "" {
		return false
	}
	for i := 0; i < len(code); i++ {
		if code[i] < '0' || code[i] > '9' {
			return false
		}
	}
	return true
}

// tokenResponse is the access_token answer.
type tokenResponse struct {
	Code        flexString `json:"code"`
	Msg         flexString `json:"msg"`
	AccessToken flexString `json:"access_token"`
	ExpireIn    flexString `json:"expire_in"`
}

// ticketResponse is the api_ticket answer.
type ticketResponse struct {
	Code    flexString `json:"code"`
	Msg     flexString `json:"msg"`
	Tickets []struct {
		Value    flexString `json:"value"`
		ExpireIn flexString `json:"expire_in"`
	} `json:"tickets"`
}

// lifetime converts expire_in (whole seconds) to a positive duration.
func lifetime(expireIn flexString) (time.Duration, error) {
	n, err := strconv.ParseInt(string(expireIn), 10, 64)
	if err != nil {
		return 0, errors.New("expire_in is missing or not a whole number")
	}
	if n <= 0 || n > math.MaxInt64/int64(time.Second) {
		return 0, fmt.Errorf("expire_in %d out of range", n)
	}
	return time.Duration(n) * time.Second, nil
}
