// Package webhook sends facesync's signed webhooks: the webhooks file, the
// signature, one delivery attempt over HTTP,
// and its metrics. It knows nothing of asynq or of the order store: the
// worker decides when an event is due and what the record says, and this
// package delivers bytes to a partner and says how it went.
//
// A delivery is a POST of
//
//	{"id":"{app_id}:{order_no}:{event}","event":"decision","record":{...}}
//
// with the headers Content-Type (application/json), Facesync-Event,
// Facesync-Delivery (the same id) and Facesync-Signature:
// t=UNIX_SECONDS,v1=HEX, HEX being the HMAC-SHA256 of "{t}.{body}" with
// the app's secret. Every attempt is signed afresh with its own t.
package webhook

import (
	"bufio"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// Header names of a delivery.
const (
	HeaderEvent     = "Facesync-Event"
	HeaderDelivery  = "Facesync-Delivery"
	HeaderSignature = "Facesync-Signature"
)

// Defaults of Config.
const (
	DefaultWait        = 24 * time.Hour   // FACESYNC_WEBHOOK_WAIT
	DefaultTimeout     = 10 * time.Second // one attempt, connection to response
	DefaultRetryBase   = 5 * time.Second  // first retry delay
	DefaultRetryCap    = time.Hour        // longest retry delay
	DefaultConcurrency = 4                // deliveries in flight per pod
)

// Tolerance is how old a signature's t receivers should accept: the
// contract tells them to refuse one more than 5 minutes old.
const Tolerance = 5 * time.Minute

// Endpoint is one line of the webhooks file: where an app's events go and
// the secret they are signed with. The secret is never logged: String and
// JSON leave it out.
type Endpoint struct {
	AppID  string
	URL    string
	Secret string `json:"-"`
}

// String names the endpoint without its secret.
func (e Endpoint) String() string { return e.AppID + " " + e.URL }

// Config configures webhooks; zero values take the defaults.
type Config struct {
	Endpoints   []Endpoint    // FACESYNC_WEBHOOKS_FILE; none: no webhooks
	Insecure    bool          // FACESYNC_WEBHOOK_INSECURE: allow http:// on any host
	Wait        time.Duration // FACESYNC_WEBHOOK_WAIT: how long a delivery is retried (24h)
	Timeout     time.Duration // one attempt (10s)
	RetryBase   time.Duration // first retry delay, doubling up to RetryCap (5s)
	RetryCap    time.Duration // longest retry delay (1h)
	Concurrency int           // deliveries in flight per pod (4)
}

// ConfigError is what Validate returns: the Config field at fault and why.
type ConfigError struct {
	Field string
	Msg   string
}

func (e *ConfigError) Error() string { return "webhook: " + e.Msg }

// Validate checks c, zero values standing for the defaults.
func (c Config) Validate() error {
	bad := func(field, format string, args ...any) error {
		return &ConfigError{Field: field, Msg: fmt.Sprintf(format, args...)}
	}
	switch {
	case c.Wait < 0:
		return bad("Wait", "negative webhook wait %v", c.Wait)
	case c.Timeout < 0:
		return bad("Timeout", "negative webhook timeout %v", c.Timeout)
	case c.RetryBase < 0 || c.RetryCap < 0:
		return bad("RetryBase", "negative webhook retry delay")
	case c.RetryBase > 0 && c.RetryCap > 0 && c.RetryCap < c.RetryBase:
		return bad("RetryCap", "retry cap %v is below the retry base %v", c.RetryCap, c.RetryBase)
	case c.Concurrency < 0:
		return bad("Concurrency", "webhook concurrency %d is below 1", c.Concurrency)
	}
	seen := map[string]bool{}
	for i, e := range c.Endpoints {
		if err := checkEndpoint(e, c.Insecure); err != nil {
			return bad("Endpoints", "endpoint %d: %v", i+1, err)
		}
		if seen[e.AppID] {
			return bad("Endpoints", "endpoint %d: app %s has a webhook already", i+1, e.AppID)
		}
		seen[e.AppID] = true
	}
	return nil
}

// WithDefaults returns c with its zero values replaced by the defaults.
func (c Config) WithDefaults() Config {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.Wait, DefaultWait)
	def(&c.Timeout, DefaultTimeout)
	def(&c.RetryBase, DefaultRetryBase)
	def(&c.RetryCap, DefaultRetryCap)
	if c.Concurrency == 0 {
		c.Concurrency = DefaultConcurrency
	}
	return c
}

// validID mirrors the contract's rule for app ids (tasks.ValidID), which
// this package does not import.
func validID(s string) bool {
	if len(s) < 1 || len(s) > 32 {
		return false
	}
	for _, c := range []byte(s) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// checkEndpoint applies the contract's rules to one endpoint: a valid app
// id, an absolute https:// URL (http:// only on a loopback host, or with
// insecure), a secret. Errors never repeat the secret.
func checkEndpoint(e Endpoint, insecure bool) error {
	if !validID(e.AppID) {
		return fmt.Errorf("app id %q is not 1 to 32 characters of A-Z a-z 0-9 _ -", e.AppID)
	}
	if e.Secret == "" {
		return errors.New("no secret")
	}
	u, err := url.Parse(e.URL)
	if err != nil || u.Host == "" || u.Hostname() == "" {
		return errors.New("the URL is not an absolute http(s) URL")
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !insecure && !Loopback(u.Hostname()) {
			return fmt.Errorf("http:// is allowed only on a loopback host (or with FACESYNC_WEBHOOK_INSECURE=true), not on %s: use https://", u.Hostname())
		}
	default:
		return fmt.Errorf("scheme %q: want https://", u.Scheme)
	}
	if u.Fragment != "" {
		return errors.New("the URL has a fragment (#...), which is never sent")
	}
	return nil
}

// Loopback reports whether host names this machine: localhost or a
// loopback address.
func Loopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Parse reads a webhooks file: one `APP_ID URL SECRET` a line, fields
// separated by blanks; blank lines and lines starting with # are skipped.
// An error names the line and what is wrong with it, never the secret.
func Parse(r io.Reader, insecure bool) ([]Endpoint, error) {
	var out []Endpoint
	seen := map[string]int{}
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 3 {
			return nil, fmt.Errorf("line %d: want APP_ID URL SECRET, found %d fields", n, len(f))
		}
		e := Endpoint{AppID: f[0], URL: f[1], Secret: f[2]}
		if err := checkEndpoint(e, insecure); err != nil {
			return nil, fmt.Errorf("line %d: %v", n, err)
		}
		if first, ok := seen[e.AppID]; ok {
			return nil, fmt.Errorf("line %d: app %s has a webhook on line %d already", n, e.AppID, first)
		}
		seen[e.AppID] = n
		out = append(out, e)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read webhooks file: %w", err)
	}
	return out, nil
}

// LoadFile reads the webhooks file at path (see Parse).
func LoadFile(path string, insecure bool) ([]Endpoint, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return Parse(f, insecure)
}

// Sign returns the Facesync-Signature value for body sent at t:
// t=UNIX_SECONDS,v1=hex(HMAC-SHA256(secret, "{t}." + body)).
func Sign(secret string, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	return "t=" + ts + ",v1=" + hex.EncodeToString(mac(secret, ts, body))
}

func mac(secret, ts string, body []byte) []byte {
	h := hmac.New(sha256.New, []byte(secret))
	h.Write([]byte(ts))
	h.Write([]byte{'.'})
	h.Write(body)
	return h.Sum(nil)
}

// Errors of Verify.
var (
	ErrBadSignature = errors.New("webhook signature does not match")
	ErrStale        = errors.New("webhook signature is too old")
)

// Verify checks a Facesync-Signature header as a receiver should: its t is
// at most tolerance away from now, and one of its v1 values is the
// HMAC-SHA256 of "{t}.{body}" with secret (compared in constant time).
func Verify(secret, header string, body []byte, now time.Time, tolerance time.Duration) error {
	var ts string
	var sigs [][]byte
	for _, part := range strings.Split(header, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		switch k {
		case "t":
			ts = v
		case "v1":
			if b, err := hex.DecodeString(v); err == nil {
				sigs = append(sigs, b)
			}
		}
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || len(sigs) == 0 {
		return fmt.Errorf("%w: want t=UNIX_SECONDS,v1=HEX", ErrBadSignature)
	}
	if d := now.Sub(time.Unix(sec, 0)); d > tolerance || d < -tolerance {
		return fmt.Errorf("%w: t is %v away", ErrStale, d.Round(time.Second))
	}
	want := mac(secret, ts, body)
	for _, s := range sigs {
		if hmac.Equal(s, want) {
			return nil
		}
	}
	return ErrBadSignature
}

// Body is a delivery's body.
type Body struct {
	ID     string          `json:"id"`
	Event  string          `json:"event"`
	Record json.RawMessage `json:"record"`
}

// NewBody encodes the body of event id for record, the decision record's
// JSON as it stood at the event.
func NewBody(id, event string, record []byte) ([]byte, error) {
	if !json.Valid(record) {
		return nil, errors.New("webhook: the event's record is not JSON")
	}
	return json.Marshal(Body{ID: id, Event: event, Record: record})
}
