package idasc

import (
	"errors"
	"net/url"
	"sort"
	"strings"
)

// redacted replaces every sensitive value the client removes from errors.
const redacted = "REDACTED"

// sensitiveParams are the query parameters whose values never leave the
// client in an error: the app secret, the access token, the signature and
// (should a caller ever send one) the ticket.
var sensitiveParams = map[string]bool{
	"secret":       true,
	"access_token": true,
	"sign":         true,
	"ticket":       true,
}

// redactor scrubs a call's sensitive values (secret, token, ticket,
// signature) from text headed for an error, in case the provider or a
// library echoes them somewhere the URL redaction does not reach.
type redactor struct {
	values []string
}

// newRedactor returns a redactor for the non-empty values, longest first so
// that a value containing another is replaced whole.
func newRedactor(values ...string) *redactor {
	r := &redactor{}
	r.add(values...)
	return r
}

// add registers more values, such as a credential the provider just returned.
func (r *redactor) add(values ...string) {
	seen := make(map[string]bool, len(r.values))
	for _, v := range r.values {
		seen[v] = true
	}
	for _, v := range values {
		// The escaped forms are how the values appear inside a URL.
		for _, s := range []string{v, url.QueryEscape(v), url.PathEscape(v)} {
			if s != "" && !seen[s] {
				seen[s] = true
				r.values = append(r.values, s)
			}
		}
	}
	sort.SliceStable(r.values, func(i, j int) bool { return len(r.values[i]) > len(r.values[j]) })
}

// scrub returns s with every registered value replaced by REDACTED.
func (r *redactor) scrub(s string) string {
	for _, v := range r.values {
		s = strings.ReplaceAll(s, v, redacted)
	}
	return s
}

// err returns err with the sensitive query values of any URL it carries
// replaced, and, should the text still hold a registered value, hidden
// behind a wrapper that keeps errors.Is working but does not unwrap to the
// original text.
func (r *redactor) err(err error) error {
	if err == nil {
		return nil
	}
	if ue, ok := err.(*url.Error); ok {
		// net/http's errors put the full request URL, query and all,
		// in front of the cause.
		err = &url.Error{Op: ue.Op, URL: redactURL(ue.URL), Err: ue.Err}
	}
	msg := err.Error()
	if s := r.scrub(msg); s != msg {
		return &scrubbedError{msg: s, err: err}
	}
	return err
}

// scrubbedError carries a redacted message. It answers errors.Is and
// Timeout for its cause but does not unwrap to it, so errors.As cannot reach
// the unredacted text.
type scrubbedError struct {
	msg string
	err error
}

func (e *scrubbedError) Error() string { return e.msg }

func (e *scrubbedError) Is(target error) bool { return errors.Is(e.err, target) }

// Timeout reports whether the cause was a timeout, as net.Error does.
func (e *scrubbedError) Timeout() bool {
	var t interface{ Timeout() bool }
	return errors.As(e.err, &t) && t.Timeout()
}

// redactURL replaces the values of the sensitive query parameters in raw,
// keeping the parameters' order and everything else as it was. A URL whose
// query cannot be split loses its whole query.
func redactURL(raw string) string {
	base, query, ok := strings.Cut(raw, "?")
	if !ok {
		return raw
	}
	query, fragment, hasFragment := strings.Cut(query, "#")
	parts := strings.Split(query, "&")
	for i, p := range parts {
		k, _, _ := strings.Cut(p, "=")
		key, err := url.QueryUnescape(k)
		if err != nil {
			return base + "?" + redacted
		}
		if sensitiveParams[strings.ToLower(key)] {
			parts[i] = k + "=" + redacted
		}
	}
	out := base + "?" + strings.Join(parts, "&")
	if hasFragment {
		out += "#" + fragment
	}
	return out
}
