package idasc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Defaults for the Client options.
const (
	DefaultTimeout         = 10 * time.Second
	DefaultEvidenceTimeout = 5 * time.Minute
	DefaultMaxBodyBytes    = 1 << 20
)

// drainBytes bounds how much of an unwanted body is read so the connection
// can be reused.
const drainBytes = 64 << 10

// Client calls the provider's server API. It is safe for concurrent use.
// Every error it returns is an *Error whose text has the app secret, access
// token, ticket and signature removed.
type Client struct {
	base            string
	hc              *http.Client
	timeout         time.Duration
	evidenceTimeout time.Duration
	maxBody         int64
}

// Option configures a Client.
type Option func(*Client)

// WithHTTPClient makes the Client send its requests through hc. The default
// client does not follow redirects, so the secret in a query is only ever
// sent to the configured base URL.
func WithHTTPClient(hc *http.Client) Option {
	return func(c *Client) {
		if hc != nil {
			c.hc = hc
		}
	}
}

// WithRoundTripper wraps the Client's transport (its tuned connection
// pool) with wrap, for instrumentation such as tracing. Apply it after
// WithHTTPClient, which it then wraps.
func WithRoundTripper(wrap func(http.RoundTripper) http.RoundTripper) Option {
	return func(c *Client) {
		if wrap == nil {
			return
		}
		hc := *c.hc
		base := hc.Transport
		if base == nil {
			base = http.DefaultTransport
		}
		hc.Transport = wrap(base)
		c.hc = &hc
	}
}

// WithTimeout bounds each access token, ticket and sync (without evidence)
// call, body included. The default is DefaultTimeout; d <= 0 keeps it.
func WithTimeout(d time.Duration) Option {
	return func(c *Client) {
		if d > 0 {
			c.timeout = d
		}
	}
}

// WithEvidenceTimeout bounds each SyncEvidence call, including the time fn
// spends consuming the evidence. The default is DefaultEvidenceTimeout;
// d <= 0 keeps it.
func WithEvidenceTimeout(d time.Duration) Option {
	return func(c *Client) {
		if d > 0 {
			c.evidenceTimeout = d
		}
	}
}

// WithMaxBodyBytes caps the response body of the calls read whole (all but
// SyncEvidence); a longer body is a transient error, read no further than
// the cap. The default is DefaultMaxBodyBytes; n <= 0 keeps it.
func WithMaxBodyBytes(n int64) Option {
	return func(c *Client) {
		if n > 0 {
			c.maxBody = n
		}
	}
}

// maxIdlePerHost keeps a connection for every request a busy pod has in
// flight: net/http's default of 2 would open (and handshake) a new one for
// nearly every call and leave thousands in TIME_WAIT.
const maxIdlePerHost = 256

func newTransport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = maxIdlePerHost
	t.MaxIdleConnsPerHost = maxIdlePerHost
	return t
}

// New returns a Client for the provider at baseURL (such as
// https://idasc.webank.com; a trailing slash is allowed).
func New(baseURL string, opts ...Option) *Client {
	c := &Client{
		base: strings.TrimRight(baseURL, "/"),
		hc: &http.Client{
			Transport:     newTransport(),
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		timeout:         DefaultTimeout,
		evidenceTimeout: DefaultEvidenceTimeout,
		maxBody:         DefaultMaxBodyBytes,
	}
	for _, o := range opts {
		o(c)
	}
	return c
}

// Credential is an access token or SIGN ticket with the lifetime the
// provider gave it.
type Credential struct {
	Value     string
	ExpiresIn time.Duration
}

// Ops name the calls in errors.
const (
	opAccessToken = "access_token"
	opTicket      = "api_ticket"
	opSync        = "sync"
)

// AccessToken fetches a new access token for the app. The provider keeps
// the previous token (and its tickets) valid for only about a minute
// afterwards, so callers must not call this concurrently for one app.
func (c *Client) AccessToken(ctx context.Context, appID, secret string) (Credential, error) {
	red := newRedactor(secret)
	if appID == "" || secret == "" {
		return Credential{}, &Error{Op: opAccessToken, Class: ClassInvalid, Err: errors.New("app id and secret are required")}
	}
	q := url.Values{
		"app_id":     {appID},
		"secret":     {secret},
		"grant_type": {"client_credential"},
		"version":    {Version},
	}
	body, err := c.getSmall(ctx, opAccessToken, "/api/oauth2/access_token", q, red)
	if err != nil {
		return Credential{}, err
	}
	var r tokenResponse
	if err := json.Unmarshal(body, &r); err != nil {
		return Credential{}, &Error{Op: opAccessToken, Class: ClassTransient, Err: red.err(fmt.Errorf("decode response: %w", err))}
	}
	red.add(string(r.AccessToken))
	return credential(opAccessToken, string(r.Code), string(r.Msg), string(r.AccessToken), r.ExpireIn, red)
}

// SignTicket fetches a SIGN ticket made from accessToken.
func (c *Client) SignTicket(ctx context.Context, appID, accessToken string) (Credential, error) {
	red := newRedactor(accessToken)
	if appID == "" || accessToken == "" {
		return Credential{}, &Error{Op: opTicket, Class: ClassInvalid, Err: errors.New("app id and access token are required")}
	}
	q := url.Values{
		"app_id":       {appID},
		"access_token": {accessToken},
		"type":         {"SIGN"},
		"version":      {Version},
	}
	body, err := c.getSmall(ctx, opTicket, "/api/oauth2/api_ticket", q, red)
	if err != nil {
		return Credential{}, err
	}
	var r ticketResponse
	if err := json.Unmarshal(body, &r); err != nil {
		return Credential{}, &Error{Op: opTicket, Class: ClassTransient, Err: red.err(fmt.Errorf("decode response: %w", err))}
	}
	var value string
	var expireIn flexString
	if len(r.Tickets) > 0 {
		value, expireIn = string(r.Tickets[0].Value), r.Tickets[0].ExpireIn
	}
	red.add(value)
	return credential(opTicket, string(r.Code), string(r.Msg), value, expireIn, red)
}

// credential checks a decoded token or ticket answer.
func credential(op, code, msg, value string, expireIn flexString, red *redactor) (Credential, error) {
	if !validCode(code) {
		return Credential{}, &Error{Op: op, Class: ClassTransient, Err: errors.New("decode response: missing or malformed code")}
	}
	if code != CodeOK {
		return Credential{}, &Error{Op: op, Class: CodeClass(code), Code: code, Msg: red.scrub(msg)}
	}
	if value == "" {
		return Credential{}, &Error{Op: op, Class: ClassTransient, Code: code, Err: errors.New("answer carries no credential")}
	}
	d, err := lifetime(expireIn)
	if err != nil {
		return Credential{}, &Error{Op: op, Class: ClassTransient, Code: code, Err: err}
	}
	return Credential{Value: value, ExpiresIn: d}, nil
}

// SyncRequest names the order to query and the SIGN ticket to sign with.
type SyncRequest struct {
	AppID   string
	OrderNo string
	Ticket  string
}

// Sync asks for the decision on an order, without evidence. On code 0 it
// returns the Result and a nil error. On any other code it returns the
// Result read from the answer together with an *Error carrying the code,
// the message and the code's class (CodeClass): ClassNotReady,
// ClassRejected, ClassThrottled, ClassRefused, ClassBadRequest,
// ClassTransient (66660021) or ClassFailed. When no answer could be read,
// the Result is nil and the *Error is ClassTransient, ClassThrottled (HTTP
// 429), ClassHTTP4xx or ClassInvalid.
func (c *Client) Sync(ctx context.Context, req SyncRequest) (*Result, error) {
	q, red, err := syncQuery(req, "")
	if err != nil {
		return nil, err
	}
	body, err := c.getSmall(ctx, opSync, "/api/server/sync", q, red)
	if err != nil {
		return nil, err
	}
	res, err := decodeSync(body)
	if err != nil {
		return nil, &Error{Op: opSync, Class: ClassTransient, Err: red.err(err)}
	}
	return res, syncOutcome(res, red)
}

// syncQuery builds the signed query of a sync call (get_file only when
// non-empty) and the redactor for its ticket and signature.
func syncQuery(req SyncRequest, getFile string) (url.Values, *redactor, error) {
	if req.AppID == "" || req.OrderNo == "" || req.Ticket == "" {
		return nil, nil, &Error{Op: opSync, Class: ClassInvalid, Err: errors.New("app id, order number and ticket are required")}
	}
	nonce := NewNonce()
	sign := Sign(req.AppID, req.OrderNo, Version, req.Ticket, nonce)
	q := url.Values{
		"app_id":   {req.AppID},
		"order_no": {req.OrderNo},
		"version":  {Version},
		"nonce":    {nonce},
		"sign":     {sign},
	}
	if getFile != "" {
		q.Set("get_file", getFile)
	}
	return q, newRedactor(req.Ticket, sign), nil
}

// syncOutcome scrubs the Result's message and returns the *Error a
// non-zero code calls for.
func syncOutcome(res *Result, red *redactor) error {
	res.Msg = red.scrub(res.Msg)
	class := CodeClass(res.Code)
	if class == ClassNone {
		return nil
	}
	return &Error{Op: opSync, Class: class, Code: res.Code, Msg: res.Msg}
}

// getSmall sends a GET bounded by the small-call timeout and returns the
// body of a 2xx answer, read no further than the body cap allows.
func (c *Client) getSmall(ctx context.Context, op, path string, q url.Values, red *redactor) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	resp, err := c.send(ctx, op, path, q, red)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, c.maxBody+1))
	if err != nil {
		return nil, transportError(ctx, op, fmt.Errorf("read response: %w", err), red)
	}
	if int64(len(body)) > c.maxBody {
		return nil, &Error{Op: op, Class: ClassTransient, Err: fmt.Errorf("response body exceeds %d bytes", c.maxBody)}
	}
	return body, nil
}

// send performs a GET on path with query q and returns a 2xx response,
// whose body the caller must close. A non-2xx answer is an *Error of the
// status's class (StatusClass).
func (c *Client) send(ctx context.Context, op, path string, q url.Values, red *redactor) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+path+"?"+q.Encode(), nil)
	if err != nil {
		return nil, &Error{Op: op, Class: ClassInvalid, Err: red.err(err)}
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, transportError(ctx, op, err, red)
	}
	if resp.StatusCode >= 200 && resp.StatusCode <= 299 {
		return resp, nil
	}
	// The body of an error answer is not read into the error: it could
	// echo the request.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, drainBytes))
	resp.Body.Close()
	return nil, &Error{Op: op, Class: StatusClass(resp.StatusCode), HTTPStatus: resp.StatusCode}
}

// transportError wraps a failure to send or read as a transient *Error.
// When the request's context has ended, its error is kept in the chain so
// errors.Is(err, context.Canceled) and context.DeadlineExceeded hold even
// where net/http reports the end in its own words.
func transportError(ctx context.Context, op string, err error, red *redactor) error {
	return &Error{Op: op, Class: ClassTransient, Err: withContextErr(ctx, red.err(err))}
}

// withContextErr adds ctx's error to err's chain once ctx has ended.
func withContextErr(ctx context.Context, err error) error {
	if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
		return fmt.Errorf("%w: %w", cerr, err)
	}
	return err
}
