package idasctest

import (
	"crypto/subtle"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/facesync/facesync/worker/idasc"
)

// Codes the fake answers besides the decision codes of a Scenario.
const (
	// CodeUnknownApp answers any request for an app_id that is not in
	// Options.Apps, and an access-token request with the wrong secret.
	CodeUnknownApp = "400104"
	// CodeRejected (idasc.CodeRejected) answers a request that is illegal
	// otherwise: wrong version, grant_type or type, a malformed nonce or
	// order number, a signature that matches no live ticket, an unknown or
	// dead access token.
	CodeRejected = idasc.CodeRejected
)

// Messages of the fake's answers.
const (
	msgOK         = "请求成功"
	msgFailed     = "认证未通过"
	msgNotReady   = "结果未生成，请稍后再试"
	msgRejected   = "不合法请求"
	msgUnknownApp = "app_id不存在或secret不正确"
	msgThrottled  = "请求频率过高"
)

// codeMsgs are the fake's messages for the codes that are not about the
// user's session, in the provider's manner.
var codeMsgs = map[string]string{
	idasc.CodeOK:              msgOK,
	idasc.CodeNotReady:        msgNotReady,
	idasc.CodeRejected:        msgRejected,
	"400102":                  "签名已过期",
	"66660001":                "不合法请求，access_token无效",
	idasc.CodeThrottled:       msgThrottled,
	"400506":                  "请求频率超出限制",
	"400103":                  "无权限调用该接口",
	CodeUnknownApp:            msgUnknownApp,
	"66660002":                "服务已过期",
	"66660030":                "服务类型未开通",
	"400502":                  "版本号不合法",
	"400601":                  "请求体不合法",
	idasc.CodeProviderNetwork: "网络异常，请稍后再试",
}

// msgFor returns msg, or the fake's message for code when msg is empty.
func msgFor(code, msg string) string {
	if msg != "" {
		return msg
	}
	if m, ok := codeMsgs[code]; ok {
		return m
	}
	return msgFailed
}

// Defaults of Options.
const (
	DefaultOverlap       = 60 * time.Second
	DefaultTokenTTL      = 7200 * time.Second
	DefaultTicketTTL     = 3600 * time.Second
	DefaultEvidenceDelay = time.Second
	DefaultMaxRecords    = 100000
)

// Options configures a Fake. The zero value of every field means its default.
type Options struct {
	// Apps maps each app_id the fake knows to its secret.
	Apps map[string]string
	// Overlap is how long an access token and its tickets stay valid after
	// a newer token of the same app is minted; negative means not at all.
	Overlap time.Duration
	// TokenTTL and TicketTTL are the lifetimes minted tokens and tickets
	// announce in expire_in; past them they are refused with 400101. A
	// ticket never outlives its token: one minted late in a token's life
	// announces the shorter lifetime, as the provider does.
	TokenTTL, TicketTTL time.Duration
	// EvidenceDelay is how long after the first accepted sync query of an
	// order its photo and video become ready; before, get_file answers
	// carry them empty. Negative means ready at once.
	EvidenceDelay time.Duration
	// Now is the clock of every expiry and delay (default time.Now).
	Now func() time.Time
	// DefaultScenario is the base of orders without a scenario of their
	// own; tokens in the order number change it (ScenarioFromOrderNo).
	DefaultScenario Scenario
	// ExpireInAsString writes expire_in of tokens and tickets as JSON
	// strings ("7200"), and CodeAsNumber their code as a JSON number.
	ExpireInAsString, CodeAsNumber bool
	// MaxRecords bounds the requests Requests returns (the most recent
	// ones); the counters are never dropped. Default DefaultMaxRecords.
	MaxRecords int
}

// Request is one request the fake answered (or began to answer).
type Request struct {
	Time       time.Time // arrival, by Options.Now
	Path       string    // URL path
	AppID      string
	OrderNo    string // sync only
	GetFile    string // sync only, as sent
	Signed     bool   // sync: the signature matched a live ticket; token and ticket: credentials accepted
	DeadTicket bool   // sync: the signature matched a ticket that was valid once and is dead now
	Code       string // code answered; "" when the answer was not JSON
	HTTPStatus int    // 0 when the client went away before the answer
	Truncated  bool   // the answer was cut mid-body
	Photo      bool   // the answer carried a non-empty photo
	Video      bool   // the answer carried a non-empty video
}

// Fake is an http.Handler that behaves like the provider's server API.
// It is safe for concurrent use.
type Fake struct {
	opts Options
	sums sumCache

	mu        sync.Mutex
	apps      map[string]*appState
	tokens    map[string]*token // by value
	scenarios map[string]Scenario
	orders    map[string]*orderState
	throttles map[string]bool // orders whose ThrottleApp window was opened
	records   []Request
}

type appState struct {
	tokenMints, ticketMints int
	deadTicketRejections    int
	tokens                  []*token
	tickets                 []*ticket

	throttleUntil  time.Time // sync requests before it answer 400504
	throttledCalls int       // sync requests answered so
	tokenScript    script    // access token answers before the real ones
	ticketScript   script    // ticket answers before the real ones
}

// script is a sequence of scripted answers and how many requests it has
// answered.
type script struct {
	steps []Step
	n     int
}

// next returns the step for the next request, consuming it, or false once
// the script has run out.
func (s *script) next() (Step, bool) {
	st, ok, _ := scriptAt(s.steps, s.n)
	if ok {
		s.n++
	}
	return st, ok
}

type token struct {
	appID    string
	value    string
	deadline time.Time // the earliest of expiry, successor mint + overlap and a kill
}

type ticket struct {
	value   string
	token   *token
	expires time.Time
}

func (t *ticket) live(now time.Time) bool {
	return now.Before(t.expires) && now.Before(t.token.deadline)
}

type orderState struct {
	first     time.Time // first accepted sync query
	accepted  int       // accepted sync queries so far
	evidenced int       // decision answers with evidence so far
}

// New returns a fake provider configured by opts.
func New(opts Options) *Fake {
	if opts.Overlap == 0 {
		opts.Overlap = DefaultOverlap
	} else if opts.Overlap < 0 {
		opts.Overlap = 0
	}
	if opts.TokenTTL <= 0 {
		opts.TokenTTL = DefaultTokenTTL
	}
	if opts.TicketTTL <= 0 {
		opts.TicketTTL = DefaultTicketTTL
	}
	if opts.EvidenceDelay == 0 {
		opts.EvidenceDelay = DefaultEvidenceDelay
	} else if opts.EvidenceDelay < 0 {
		opts.EvidenceDelay = 0
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.MaxRecords <= 0 {
		opts.MaxRecords = DefaultMaxRecords
	}
	apps := make(map[string]string, len(opts.Apps))
	for id, secret := range opts.Apps {
		apps[id] = secret
	}
	opts.Apps = apps
	return &Fake{
		opts:      opts,
		apps:      make(map[string]*appState),
		tokens:    make(map[string]*token),
		scenarios: make(map[string]Scenario),
		orders:    make(map[string]*orderState),
		throttles: make(map[string]bool),
	}
}

// ServeHTTP answers GET /api/oauth2/access_token, /api/oauth2/api_ticket
// and /api/server/sync.
func (f *Fake) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/api/oauth2/access_token", "/api/oauth2/api_ticket", "/api/server/sync":
	default:
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	switch r.URL.Path {
	case "/api/oauth2/access_token":
		f.serveAccessToken(w, r)
	case "/api/oauth2/api_ticket":
		f.serveTicket(w, r)
	default:
		f.serveSync(w, r)
	}
}

// SetScenario sets the scenario of one order; it wins over the order
// number's tokens and Options.DefaultScenario.
func (f *Fake) SetScenario(appID, orderNo string, s Scenario) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.scenarios[orderKey(appID, orderNo)] = s
}

// scenario returns the scenario in force for an order.
func (f *Fake) scenario(appID, orderNo string) Scenario {
	f.mu.Lock()
	s, ok := f.scenarios[orderKey(appID, orderNo)]
	f.mu.Unlock()
	if ok {
		return s
	}
	return ScenarioFromOrderNo(orderNo, f.opts.DefaultScenario)
}

// Throttle makes every sync request of the app answer 400504 (request rate
// too high) until the given time by Options.Now, before its signature is
// checked, without consuming any order's scenario; ThrottledCalls counts
// them. A zero time ends the window.
func (f *Fake) Throttle(appID string, until time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.app(appID).throttleUntil = until
}

// ThrottledCalls returns how many sync requests of the app a throttling
// window (Throttle) answered with 400504.
func (f *Fake) ThrottledCalls(appID string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	if a := f.apps[appID]; a != nil {
		return a.throttledCalls
	}
	return 0
}

// openThrottle opens the order's ThrottleApp window for its app, once.
func (f *Fake) openThrottle(appID, orderNo string, until time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	key := orderKey(appID, orderNo)
	if f.throttles[key] {
		return
	}
	f.throttles[key] = true
	if a := f.app(appID); until.After(a.throttleUntil) {
		a.throttleUntil = until
	}
}

// throttled reports whether a sync request of the app arriving at now falls
// in a throttling window, counting it when it does.
func (f *Fake) throttled(appID string, now time.Time) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	a := f.apps[appID]
	if a == nil || !now.Before(a.throttleUntil) {
		return false
	}
	a.throttledCalls++
	return true
}

// SetTokenScript makes the app's next access token requests answer the
// steps, in order, before their credentials are checked; once the steps
// are used up (never, when the last has Times 0) requests are answered as
// usual. It replaces any earlier script.
func (f *Fake) SetTokenScript(appID string, steps ...Step) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.app(appID).tokenScript = script{steps: slices.Clone(steps)}
}

// SetTicketScript is SetTokenScript for ticket requests.
func (f *Fake) SetTicketScript(appID string, steps ...Step) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.app(appID).ticketScript = script{steps: slices.Clone(steps)}
}

// scripted returns the scripted answer for the app's next token (or
// ticket) request, if its script has one left.
func (f *Fake) scripted(appID string, ticket bool) (Step, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	a := f.apps[appID]
	if a == nil {
		return Step{}, false
	}
	if ticket {
		return a.ticketScript.next()
	}
	return a.tokenScript.next()
}

// writeStep answers a request with a scripted step and records it.
func (f *Fake) writeStep(w http.ResponseWriter, st Step, rec Request, now time.Time) {
	if st.HTTPStatus != 0 {
		rec.HTTPStatus = st.HTTPStatus
		f.record(rec)
		http.Error(w, http.StatusText(st.HTTPStatus), st.HTTPStatus)
		return
	}
	rec.Code = st.Code
	f.record(rec)
	f.writeCode(w, st.Code, msgFor(st.Code, st.Msg), now)
}

// Requests returns the requests answered so far, oldest first (at most
// Options.MaxRecords of the latest).
func (f *Fake) Requests() []Request {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Request(nil), f.records...)
}

// TokenMints returns how many access tokens the app was given.
func (f *Fake) TokenMints(appID string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	if a := f.apps[appID]; a != nil {
		return a.tokenMints
	}
	return 0
}

// TicketMints returns how many SIGN tickets the app was given.
func (f *Fake) TicketMints(appID string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	if a := f.apps[appID]; a != nil {
		return a.ticketMints
	}
	return 0
}

// RejectedWithDeadTicket returns how many sync requests of the app were
// refused because they were signed with a ticket that had been valid and
// was dead by then: expired, outlived by its token's overlap window, or
// killed by KillCredentials.
func (f *Fake) RejectedWithDeadTicket(appID string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	if a := f.apps[appID]; a != nil {
		return a.deadTicketRejections
	}
	return 0
}

// KillCredentials ends every access token and ticket of the app at once, as
// if someone else had rotated them and the overlap had passed: every request
// signed with them is refused with 400101 until a new pair is fetched.
func (f *Fake) KillCredentials(appID string) {
	now := f.opts.Now()
	f.mu.Lock()
	defer f.mu.Unlock()
	if a := f.apps[appID]; a != nil {
		for _, t := range a.tokens {
			if now.Before(t.deadline) {
				t.deadline = now
			}
		}
	}
}

// Evidence returns the content type, size and SHA-256 (hex) of the file of
// the given kind (idasc.KindPhoto or idasc.KindVideo) the fake serves for an
// order under its current scenario, or zero values when it serves none. The
// bytes are generated from the app, order, kind and format, so they are the
// same on every request and in every process; InvalidBase64 and cut answers
// spoil only their transport, not these bytes.
func (f *Fake) Evidence(appID, orderNo, kind string) (contentType string, size int64, sha256hex string) {
	e, ok := newEvidenceSpec(appID, orderNo, kind, f.scenario(appID, orderNo))
	if !ok {
		return "", 0, ""
	}
	return e.contentType, e.size, f.sums.sum(e)
}

func (f *Fake) serveAccessToken(w http.ResponseWriter, r *http.Request) {
	now := f.opts.Now()
	q := r.URL.Query()
	appID := q.Get("app_id")
	rec := Request{Time: now, Path: r.URL.Path, AppID: appID, HTTPStatus: http.StatusOK}
	secret, known := f.opts.Apps[appID]
	if st, ok := f.scripted(appID, false); ok && known {
		f.writeStep(w, st, rec, now)
		return
	}
	switch {
	case !known || subtle.ConstantTimeCompare([]byte(secret), []byte(q.Get("secret"))) != 1:
		rec.Code = CodeUnknownApp
		f.record(rec)
		f.writeCode(w, CodeUnknownApp, msgUnknownApp, now)
		return
	case q.Get("grant_type") != "client_credential" || q.Get("version") != idasc.Version:
		rec.Code = CodeRejected
		f.record(rec)
		f.writeCode(w, CodeRejected, msgRejected, now)
		return
	}
	t := &token{appID: appID, value: credential(), deadline: now.Add(f.opts.TokenTTL)}
	f.mu.Lock()
	a := f.app(appID)
	// The provider's rotation rule: older tokens live on for the overlap.
	for _, old := range a.tokens {
		if end := now.Add(f.opts.Overlap); end.Before(old.deadline) {
			old.deadline = end
		}
	}
	a.tokens = append(a.tokens, t)
	a.tokenMints++
	f.tokens[t.value] = t
	f.mu.Unlock()
	rec.Signed, rec.Code = true, idasc.CodeOK
	f.record(rec)

	var j jsonWriter
	j.begin()
	f.writeCodeMsg(&j, idasc.CodeOK, msgOK)
	j.str("transactionTime", stamp(now))
	j.str("access_token", t.value)
	j.str("expire_time", stamp(t.deadline))
	f.writeExpireIn(&j, f.opts.TokenTTL)
	j.end()
	writeJSON(w, j.bytes())
}

func (f *Fake) serveTicket(w http.ResponseWriter, r *http.Request) {
	now := f.opts.Now()
	q := r.URL.Query()
	appID := q.Get("app_id")
	rec := Request{Time: now, Path: r.URL.Path, AppID: appID, HTTPStatus: http.StatusOK}
	if _, known := f.opts.Apps[appID]; !known {
		rec.Code = CodeUnknownApp
		f.record(rec)
		f.writeCode(w, CodeUnknownApp, msgUnknownApp, now)
		return
	}
	if st, ok := f.scripted(appID, true); ok {
		f.writeStep(w, st, rec, now)
		return
	}
	f.mu.Lock()
	tok := f.tokens[q.Get("access_token")]
	if tok == nil || tok.appID != appID || !now.Before(tok.deadline) ||
		q.Get("type") != "SIGN" || q.Get("version") != idasc.Version {
		f.mu.Unlock()
		rec.Code = CodeRejected
		f.record(rec)
		f.writeCode(w, CodeRejected, msgRejected, now)
		return
	}
	t := &ticket{value: credential(), token: tok, expires: now.Add(f.opts.TicketTTL)}
	if tok.deadline.Before(t.expires) {
		t.expires = tok.deadline
	}
	a := f.app(appID)
	a.tickets = append(a.tickets, t)
	a.ticketMints++
	f.mu.Unlock()
	rec.Signed, rec.Code = true, idasc.CodeOK
	f.record(rec)

	var j jsonWriter
	j.begin()
	f.writeCodeMsg(&j, idasc.CodeOK, msgOK)
	j.str("transactionTime", stamp(now))
	j.key("tickets")
	j.beginArray()
	j.begin()
	j.str("value", t.value)
	f.writeExpireIn(&j, t.expires.Sub(now))
	j.str("expire_time", stamp(t.expires))
	j.end()
	j.endArray()
	j.end()
	writeJSON(w, j.bytes())
}

// app returns the state of a configured app, creating it; f.mu is held.
func (f *Fake) app(appID string) *appState {
	a := f.apps[appID]
	if a == nil {
		a = new(appState)
		f.apps[appID] = a
	}
	return a
}

// record appends rec, dropping the oldest quarter when the bound is reached.
func (f *Fake) record(rec Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.records) >= f.opts.MaxRecords {
		drop := max(f.opts.MaxRecords/4, 1)
		f.records = append(f.records[:0], f.records[drop:]...)
	}
	f.records = append(f.records, rec)
}

func (f *Fake) writeCodeMsg(j *jsonWriter, code, msg string) {
	if f.opts.CodeAsNumber && code != "" && digits(code) {
		j.num("code", code)
	} else {
		j.str("code", code)
	}
	j.str("msg", msg)
}

func (f *Fake) writeExpireIn(j *jsonWriter, d time.Duration) {
	secs := strconv.FormatInt(int64(d/time.Second), 10)
	if f.opts.ExpireInAsString {
		j.str("expire_in", secs)
	} else {
		j.num("expire_in", secs)
	}
}

// writeCode answers a token or ticket request with a non-zero code.
func (f *Fake) writeCode(w http.ResponseWriter, code, msg string, now time.Time) {
	var j jsonWriter
	j.begin()
	f.writeCodeMsg(&j, code, msg)
	j.str("transactionTime", stamp(now))
	j.end()
	writeJSON(w, j.bytes())
}

func writeJSON(w http.ResponseWriter, body []byte) {
	w.Header().Set("Content-Type", "application/json;charset=UTF-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	_, _ = w.Write(body) // the client went away; nothing to do
}

// credential returns a fresh 64-character token or ticket value.
func credential() string { return idasc.NewNonce() + idasc.NewNonce() }

func orderKey(appID, orderNo string) string { return appID + "\x00" + orderNo }

// cst is the provider's time zone (UTC+8), used in its timestamps.
var cst = time.FixedZone("CST", 8*60*60)

// stamp formats t as the provider's yyyyMMddHHmmss timestamps.
func stamp(t time.Time) string { return t.In(cst).Format("20060102150405") }
