// Package api is facesync's partner HTTP API (`facesync api`): partners in
// any language submit orders and read their decision records and evidence
// links over HTTP, without an asynq client.
//
// Every refusal is {"error":{"code":"..","message":".."}}. Checks run in
// the contract's order: route (404, 405 with Allow), key (401), body size
// (413), content type (415), payload or path ids (400), the key's apps
// (403), purge marker (410); Redis or the store unreachable is 503.
package api

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"path"
	"strings"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"

	"github.com/facesync/facesync/cmd/facesync/audit"
	"github.com/facesync/facesync/tasks"
	"github.com/facesync/facesync/worker/orderstore"
	"github.com/facesync/facesync/worker/redisconn"
	"github.com/facesync/facesync/worker/tracing"
)

// OpenAPI is the OpenAPI 3.1 document of this API, served at
// /v1/openapi.json; the tests check every response against it.
//
//go:embed openapi.json
var OpenAPI []byte

// MaxBody is the largest request body accepted (413 above it).
const MaxBody = 4 << 10

// LinkTTL is how long a presigned evidence link is valid.
const LinkTTL = 5 * time.Minute

// Timeouts of the HTTP server; NewHTTPServer sets them.
const (
	ReadHeaderTimeout = 5 * time.Second
	ReadTimeout       = 10 * time.Second
	WriteTimeout      = 30 * time.Second
	IdleTimeout       = 2 * time.Minute
)

// opTimeout bounds the Redis and S3 calls of one request, so a stalled
// store answers 503 rather than holding the connection.
const opTimeout = 5 * time.Second

// Enqueuer enqueues tasks: the part of *asynq.Client the API needs.
type Enqueuer interface {
	EnqueueContext(ctx context.Context, task *asynq.Task, opts ...asynq.Option) (*asynq.TaskInfo, error)
}

// TaskLookup finds and deletes tasks by queue and ID: the part of
// *asynq.Inspector the API needs. GetTaskInfo returns an error wrapping
// asynq.ErrTaskNotFound or asynq.ErrQueueNotFound when there is none.
type TaskLookup interface {
	GetTaskInfo(queue, id string) (*asynq.TaskInfo, error)
	DeleteTask(queue, id string) error
}

// Records reads decision records: the part of *orderstore.Store the API
// needs. Get returns the record, its JSON as stored, and an error wrapping
// orderstore.ErrNoRecord when there is none.
type Records interface {
	Get(ctx context.Context, appID, orderNo string) (*orderstore.Record, []byte, error)
}

// Linker presigns evidence links. Link returns a URL from which key can be
// downloaded for ttl, or an error wrapping ErrNotStored when no object is
// at key.
type Linker interface {
	Link(ctx context.Context, key string, ttl time.Duration) (string, error)
}

// ErrNotStored reports an evidence object that is not in the store.
var ErrNotStored = errors.New("evidence object not stored")

// PurgedFunc reports whether an order was purged (its purge marker is set).
type PurgedFunc func(ctx context.Context, appID, orderNo string) (bool, error)

// Deps are what the API runs on.
type Deps struct {
	Keys     *Keys
	Enqueuer Enqueuer
	Tasks    TaskLookup
	Records  Records
	Links    Linker
	// Purged is the purge-marker check; nil means no order is ever purged.
	Purged PurgedFunc
	// Replicated, when set, is called with the order's task key after it
	// is enqueued (or found queued) and before it is acknowledged with
	// 202: in Sentinel mode the Confirmer (redisconn), so that an
	// acknowledged order survives a failover. redisconn.ErrLost (the task
	// is not on the current master) enqueues it again, a few times; any
	// other error answers 503 (a retry is harmless).
	Replicated func(ctx context.Context, keys ...string) error
	// Logger gets one access line per request; nil logs nothing.
	Logger *zap.Logger
	// Audit gets the evidence_link audit events; it must log at info
	// whatever the log level (the contract: audit lines are always
	// written). Required.
	Audit *zap.Logger
	// Registerer gets the API's metrics; nil registers none.
	Registerer prometheus.Registerer
	// Tracer, when set, gives POST /v1/orders a span continuing the
	// request's traceparent, carried on in the task's headers.
	Tracer trace.TracerProvider
}

// Server is the API's http.Handler.
type Server struct {
	d       Deps
	mux     *http.ServeMux
	metrics *metrics
}

// New returns the API on d.
func New(d Deps) (*Server, error) {
	switch {
	case d.Keys == nil:
		return nil, errors.New("api: no keys")
	case d.Enqueuer == nil || d.Tasks == nil || d.Records == nil || d.Links == nil:
		return nil, errors.New("api: Enqueuer, Tasks, Records and Links are required")
	case d.Audit == nil:
		return nil, errors.New("api: no audit logger")
	}
	if d.Logger == nil {
		d.Logger = zap.NewNop()
	}
	m, err := newMetrics(d.Registerer)
	if err != nil {
		return nil, err
	}
	s := &Server{d: d, mux: http.NewServeMux(), metrics: m}
	// Patterns carry no method: the handlers answer 405 themselves, so
	// the body is JSON like every other refusal.
	for pattern, h := range map[string]http.HandlerFunc{
		routeOrders: s.postOrder, routeOrder: s.getOrder, routeEvidence: s.getEvidence, routeOpenAPI: s.getOpenAPI,
	} {
		s.mux.Handle(pattern, named(pattern, h))
	}
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, codeNotFound, "no such route: see /v1/openapi.json")
	})
	return s, nil
}

// Route patterns; the access log and metrics name a request by these.
const (
	routeOrders   = "/v1/orders"
	routeOrder    = "/v1/orders/{app_id}/{order_no}"
	routeEvidence = "/v1/orders/{app_id}/{order_no}/evidence/{kind}"
	routeOpenAPI  = "/v1/openapi.json"
	routeNone     = "unmatched"
)

// NewHTTPServer returns an http.Server for h with the API's timeouts.
func NewHTTPServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: ReadHeaderTimeout,
		ReadTimeout:       ReadTimeout,
		WriteTimeout:      WriteTimeout,
		IdleTimeout:       IdleTimeout,
		MaxHeaderBytes:    16 << 10,
	}
}

// Error codes: the code word of every JSON error the API answers.
const (
	codeNotFound         = "not_found"
	codeMethodNotAllowed = "method_not_allowed"
	codeUnauthorized     = "unauthorized"
	codeTooLarge         = "payload_too_large"
	codeMediaType        = "unsupported_media_type"
	codeInvalid          = "invalid_payload"
	codeForbidden        = "forbidden"
	codePurged           = "purged"
	codeUnavailable      = "unavailable"
	codeInternal         = "internal"
)

// reqInfo is what the access log learns while a request is handled.
type reqInfo struct {
	route string // the pattern that matched; routeNone for none
	keyID string
}

// named notes the route's pattern for the access log and metrics.
func named(pattern string, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if info, ok := r.Context().Value(infoKey{}).(*reqInfo); ok {
			info.route = pattern
		}
		h(w, r)
	}
}

type infoKey struct{}

// recorder remembers the status a handler wrote.
type recorder struct {
	http.ResponseWriter
	status int
}

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

// ServeHTTP routes the request and writes its access line and metrics.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	info := &reqInfo{route: routeNone}
	r = r.WithContext(context.WithValue(r.Context(), infoKey{}, info))
	rec := &recorder{ResponseWriter: w}
	defer func() {
		if v := recover(); v != nil {
			// Never a panic to the partner or a dropped connection.
			s.d.Logger.Error("panic in handler", zap.String("route", info.route), zap.Any("panic", v))
			if rec.status == 0 {
				writeError(rec, http.StatusInternalServerError, codeInternal, "internal error")
			}
		}
		status := rec.status
		if status == 0 {
			status = http.StatusOK
		}
		d := time.Since(start)
		s.metrics.observe(info.route, status, d)
		s.d.Logger.Info("request",
			zap.String("method", logMethod(r.Method)), zap.String("route", info.route), zap.Int("status", status),
			zap.Duration("duration", d), zap.String("key_id", info.keyID))
	}()
	// ServeMux redirects unclean paths (//, /./, /../) with an HTML body;
	// to a partner they are unknown routes.
	if p := r.URL.Path; p == "" || p[0] != '/' || (path.Clean(p) != p && p != "/") {
		writeError(rec, http.StatusNotFound, codeNotFound, "no such route: see /v1/openapi.json")
		return
	}
	s.mux.ServeHTTP(rec, r)
}

// logMethod is the method for the access log: a method is any token the
// client likes, so unknown ones are logged as "other".
func logMethod(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions, http.MethodConnect, http.MethodTrace:
		return m
	}
	return "other"
}

// errorBody is the body of every refusal.
type errorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	var b errorBody
	b.Error.Code, b.Error.Message = code, msg
	writeJSON(w, status, b)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		// Only our own types reach here; they always encode.
		status, b = http.StatusInternalServerError, []byte(`{"error":{"code":"internal","message":"encode response"}}`)
	}
	writeRaw(w, status, b)
}

func writeRaw(w http.ResponseWriter, status int, b []byte) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// queued is the 202 body of POST and GET alike.
type queued struct {
	AppID   string `json:"app_id"`
	OrderNo string `json:"order_no"`
	Status  string `json:"status"`
}

func writeQueued(w http.ResponseWriter, appID, orderNo string) {
	writeJSON(w, http.StatusAccepted, queued{appID, orderNo, "queued"})
}

func methodNotAllowed(w http.ResponseWriter, r *http.Request, allow string) bool {
	if r.Method == allow {
		return false
	}
	w.Header().Set("Allow", allow)
	writeError(w, http.StatusMethodNotAllowed, codeMethodNotAllowed,
		fmt.Sprintf("method %s is not allowed here; use %s", truncate(r.Method), allow))
	return true
}

// authenticate finds the request's key, or answers 401.
func (s *Server) authenticate(w http.ResponseWriter, r *http.Request) *Key {
	auth := r.Header.Get("Authorization")
	scheme, token, ok := strings.Cut(auth, " ")
	var k *Key
	if ok && strings.EqualFold(scheme, "Bearer") {
		k = s.d.Keys.Lookup(strings.TrimSpace(token))
	}
	if k == nil {
		w.Header().Set("WWW-Authenticate", `Bearer realm="facesync"`)
		msg := "unknown API key"
		if auth == "" {
			msg = "no API key: send Authorization: Bearer KEY"
		} else if !ok || !strings.EqualFold(scheme, "Bearer") {
			msg = "want Authorization: Bearer KEY"
		}
		writeError(w, http.StatusUnauthorized, codeUnauthorized, msg)
		return nil
	}
	if info, ok := r.Context().Value(infoKey{}).(*reqInfo); ok {
		info.keyID = k.ID
	}
	return k
}

// bodyTooLarge answers 413 for a GET whose body is declared over MaxBody;
// GET bodies are otherwise ignored.
func bodyTooLarge(w http.ResponseWriter, r *http.Request) bool {
	if r.ContentLength > MaxBody {
		writeError(w, http.StatusRequestEntityTooLarge, codeTooLarge, fmt.Sprintf("the body is over %d bytes", MaxBody))
		return true
	}
	return false
}

// readBody reads at most MaxBody bytes, or answers 413.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	if bodyTooLarge(w, r) {
		return nil, false
	}
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBody))
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		writeError(w, http.StatusRequestEntityTooLarge, codeTooLarge, fmt.Sprintf("the body is over %d bytes", MaxBody))
		return nil, false
	case err != nil:
		writeError(w, http.StatusBadRequest, codeInvalid, "the body could not be read")
		return nil, false
	}
	return b, true
}

func jsonContentType(w http.ResponseWriter, r *http.Request) bool {
	ct := r.Header.Get("Content-Type")
	mt, _, err := mime.ParseMediaType(ct)
	if err == nil && mt == "application/json" {
		return true
	}
	msg := "want Content-Type: application/json"
	if ct == "" {
		msg = "no Content-Type: want application/json"
	}
	writeError(w, http.StatusUnsupportedMediaType, codeMediaType, msg)
	return false
}

// decodeOrder decodes a POST body strictly: one JSON object whose field
// names are exactly app_id, order_no and get_file, each at most once
// (encoding/json alone would match "APP_ID" too, and let the last of two
// app_id fields win), with valid ids and get_file.
func decodeOrder(b []byte) (tasks.FetchResult, error) {
	var p tasks.FetchResult
	if len(bytes.TrimSpace(b)) == 0 {
		return p, errors.New("no body: want {\"app_id\":\"..\",\"order_no\":\"..\",\"get_file\":\"1\"}")
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	if tok, err := dec.Token(); err != nil {
		return p, fmt.Errorf("not a JSON object with app_id and order_no: %s", jsonMessage(err))
	} else if d, ok := tok.(json.Delim); !ok || d != '{' {
		return p, errors.New("not a JSON object with app_id and order_no: want a JSON object")
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return p, fmt.Errorf("not a JSON object with app_id and order_no: %s", jsonMessage(err))
		}
		name, _ := tok.(string)
		var dst any
		switch name {
		case "app_id":
			dst = &p.AppID
		case "order_no":
			dst = &p.OrderNo
		case "get_file":
			dst = &p.GetFile
		default:
			return p, fmt.Errorf("unknown field %q (want app_id, order_no and get_file only)", truncate(name))
		}
		if seen[name] {
			return p, fmt.Errorf("field %s given twice", name)
		}
		seen[name] = true
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return p, fmt.Errorf("not a JSON object with app_id and order_no: %s", jsonMessage(err))
		}
		if err := json.Unmarshal(raw, dst); err != nil {
			if name == "get_file" {
				return p, errors.New("get_file must be a string or a number")
			}
			return p, fmt.Errorf("%s must be a string", name)
		}
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return p, fmt.Errorf("not a JSON object with app_id and order_no: %s", jsonMessage(err))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return p, errors.New("more than one JSON value in the body")
	}
	if err := p.Validate(); err != nil {
		return p, err
	}
	p.GetFile = p.GetFile.Or()
	return p, nil
}

// jsonMessage says what encoding/json found wrong, shortly.
func jsonMessage(err error) string {
	var se *json.SyntaxError
	switch {
	case errors.As(err, &se):
		return fmt.Sprintf("invalid JSON at byte %d", se.Offset)
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return "the JSON ends early"
	}
	return truncate(strings.TrimPrefix(err.Error(), "json: "))
}

// orderIDs validates the path's ids, or answers 400.
func orderIDs(w http.ResponseWriter, r *http.Request) (string, string, bool) {
	appID, orderNo := r.PathValue("app_id"), r.PathValue("order_no")
	if err := (tasks.FetchResult{AppID: appID, OrderNo: orderNo}).Validate(); err != nil {
		writeError(w, http.StatusBadRequest, codeInvalid, err.Error())
		return "", "", false
	}
	return appID, orderNo, true
}

// allowed runs the last two checks: the key's apps (403) and the purge
// marker (410).
func (s *Server) allowed(ctx context.Context, w http.ResponseWriter, k *Key, appID, orderNo string) bool {
	if !k.Allows(appID) {
		writeError(w, http.StatusForbidden, codeForbidden, fmt.Sprintf("this API key is not allowed for app %s", appID))
		return false
	}
	if s.d.Purged == nil {
		return true
	}
	purged, err := s.d.Purged(ctx, appID, orderNo)
	if err != nil {
		s.unavailable(w, "purge marker", err)
		return false
	}
	if purged {
		writeError(w, http.StatusGone, codePurged, fmt.Sprintf("order %s:%s was purged", appID, orderNo))
		return false
	}
	return true
}

// unavailable answers 503; the error goes to the log (it holds no key or
// PII: Redis and S3 errors name hosts and keys), not to the partner.
func (s *Server) unavailable(w http.ResponseWriter, what string, err error) {
	s.d.Logger.Warn("store unreachable", zap.String("reading", what), zap.Error(err))
	writeError(w, http.StatusServiceUnavailable, codeUnavailable, "facesync's store is unreachable; try again later")
}

// record reads an order's record. found is false with no response
// written when there is none; ok is false once a response was written.
func (s *Server) record(ctx context.Context, w http.ResponseWriter, appID, orderNo string) (rec *orderstore.Record, raw []byte, found, ok bool) {
	rec, raw, err := s.d.Records.Get(ctx, appID, orderNo)
	switch {
	case errors.Is(err, orderstore.ErrNoRecord):
		return nil, nil, false, true
	case err != nil && raw != nil:
		// Stored but not decodable: not the partner's fault, and retrying
		// will not help.
		s.d.Logger.Error("unreadable decision record", zap.String("app_id", appID), zap.String("order_no", orderNo), zap.Error(err))
		writeError(w, http.StatusInternalServerError, codeInternal, "the stored decision record is unreadable")
		return nil, nil, false, false
	case err != nil:
		s.unavailable(w, "decision record", err)
		return nil, nil, false, false
	}
	return rec, raw, true, true
}

// maxLost bounds how often one POST enqueues an order again that a
// failover lost.
const maxLost = 2

// postOrder is POST /v1/orders.
func (s *Server) postOrder(w http.ResponseWriter, r *http.Request) {
	if methodNotAllowed(w, r, http.MethodPost) {
		return
	}
	k := s.authenticate(w, r)
	if k == nil {
		return
	}
	body, ok := readBody(w, r)
	if !ok || !jsonContentType(w, r) {
		return
	}
	p, err := decodeOrder(body)
	if err != nil {
		writeError(w, http.StatusBadRequest, codeInvalid, err.Error())
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), opTimeout)
	defer cancel()
	if s.d.Tracer != nil {
		var span trace.Span
		ctx = tracing.HTTPPropagator().Extract(ctx, propagation.HeaderCarrier(r.Header))
		ctx, span = s.d.Tracer.Tracer(tracing.ScopeName).Start(ctx, "POST /v1/orders", trace.WithSpanKind(trace.SpanKindServer))
		defer span.End()
		tracing.Order(ctx, p.AppID, p.OrderNo)
	}
	if !s.allowed(ctx, w, k, p.AppID, p.OrderNo) {
		return
	}
	// A decided order answers with its record and enqueues nothing.
	_, raw, found, ok := s.record(ctx, w, p.AppID, p.OrderNo)
	if !ok {
		return
	}
	if found {
		writeRaw(w, http.StatusOK, raw)
		return
	}
	lost := 0
enqueue:
	dup, err := tasks.Enqueue(ctx, s.d.Enqueuer, p, tasks.Headers(tracing.Inject(ctx)))
	if err != nil {
		s.unavailable(w, "enqueue", err)
		return
	}
	if dup {
		// The order may have been decided since the first read.
		_, raw, found, ok := s.record(ctx, w, p.AppID, p.OrderNo)
		if !ok {
			return
		}
		if found {
			writeRaw(w, http.StatusOK, raw)
			return
		}
		if dup, ok = s.replaceCompleted(ctx, w, p); !ok {
			return
		}
	}
	if s.d.Replicated != nil {
		if err := s.d.Replicated(ctx, redisconn.TaskKey(tasks.QueueResult, tasks.TaskID(p.AppID, p.OrderNo))); err != nil {
			if !errors.Is(err, redisconn.ErrLost) || lost >= maxLost {
				s.unavailable(w, "replication", err)
				return
			}
			lost++
			goto enqueue // a failover took the task with the old master
		}
	}
	s.metrics.enqueued(dup)
	writeQueued(w, p.AppID, p.OrderNo)
}

// replaceCompleted handles a task ID conflict for an order without a
// record: a task still to run is the order queued; a completed one, kept
// for its retention while the record is gone (a FACESYNC_DECISION_TTL
// shorter than the retention), would never write a record again, so it is
// deleted and the order enqueued afresh. dup reports whether a task was
// there to run; ok is false once a response was written.
func (s *Server) replaceCompleted(ctx context.Context, w http.ResponseWriter, p tasks.FetchResult) (dup, ok bool) {
	id := tasks.TaskID(p.AppID, p.OrderNo)
	info, err := s.d.Tasks.GetTaskInfo(tasks.QueueResult, id)
	switch {
	case errors.Is(err, asynq.ErrTaskNotFound), errors.Is(err, asynq.ErrQueueNotFound):
		// Gone since the conflict (its retention ended): enqueue again.
	case err != nil:
		s.unavailable(w, "task", err)
		return false, false
	case info.State != asynq.TaskStateCompleted:
		return true, true
	default:
		// An error here is a concurrent request that replaced the task
		// first (now active, say): the enqueue below then finds it.
		_ = s.d.Tasks.DeleteTask(tasks.QueueResult, id)
	}
	dup, err = tasks.Enqueue(ctx, s.d.Enqueuer, p, tasks.Headers(tracing.Inject(ctx)))
	if err != nil {
		s.unavailable(w, "enqueue", err)
		return false, false
	}
	// dup here: another request re-enqueued it first; queued either way.
	return dup, true
}

// orderGet makes the checks of a GET about one order, in their fixed
// order (method, key, body, ids, the key's apps and the purge marker), and
// answers the first that fails. ok: the request may go on, with ctx
// (bounded by opTimeout; cancel it) and the key that made it.
func (s *Server) orderGet(w http.ResponseWriter, r *http.Request) (ctx context.Context, cancel context.CancelFunc, k *Key, appID, orderNo string, ok bool) {
	if methodNotAllowed(w, r, http.MethodGet) {
		return nil, nil, nil, "", "", false
	}
	if k = s.authenticate(w, r); k == nil || bodyTooLarge(w, r) {
		return nil, nil, nil, "", "", false
	}
	if appID, orderNo, ok = orderIDs(w, r); !ok {
		return nil, nil, nil, "", "", false
	}
	ctx, cancel = context.WithTimeout(r.Context(), opTimeout)
	if !s.allowed(ctx, w, k, appID, orderNo) {
		cancel()
		return nil, nil, nil, "", "", false
	}
	return ctx, cancel, k, appID, orderNo, true
}

// getOrder is GET /v1/orders/{app_id}/{order_no}.
func (s *Server) getOrder(w http.ResponseWriter, r *http.Request) {
	ctx, cancel, _, appID, orderNo, ok := s.orderGet(w, r)
	if !ok {
		return
	}
	defer cancel()
	_, raw, found, ok := s.record(ctx, w, appID, orderNo)
	if !ok {
		return
	}
	if found {
		writeRaw(w, http.StatusOK, raw)
		return
	}
	// Queued: a task of any state but completed. A completed task without
	// a record (deleted or expired) will never write one: not found.
	info, err := s.d.Tasks.GetTaskInfo(tasks.QueueResult, tasks.TaskID(appID, orderNo))
	switch {
	case errors.Is(err, asynq.ErrTaskNotFound), errors.Is(err, asynq.ErrQueueNotFound):
	case err != nil:
		s.unavailable(w, "task", err)
		return
	case info.State != asynq.TaskStateCompleted:
		writeQueued(w, appID, orderNo)
		return
	}
	// The task may have completed between the two reads.
	_, raw, found, ok = s.record(ctx, w, appID, orderNo)
	if !ok {
		return
	}
	if found {
		writeRaw(w, http.StatusOK, raw)
		return
	}
	writeError(w, http.StatusNotFound, codeNotFound, fmt.Sprintf("no order %s:%s: never submitted, or its record expired", appID, orderNo))
}

// Evidence kinds of the evidence route.
const (
	kindPhoto    = "photo"
	kindVideo    = "video"
	kindManifest = "manifest"
)

// getEvidence is GET /v1/orders/{app_id}/{order_no}/evidence/{kind}.
func (s *Server) getEvidence(w http.ResponseWriter, r *http.Request) {
	kind := r.PathValue("kind")
	if kind != kindPhoto && kind != kindVideo && kind != kindManifest {
		writeError(w, http.StatusNotFound, codeNotFound, "no such route: evidence is photo, video or manifest")
		return
	}
	ctx, cancel, k, appID, orderNo, ok := s.orderGet(w, r)
	if !ok {
		return
	}
	defer cancel()
	rec, _, found, ok := s.record(ctx, w, appID, orderNo)
	if !ok {
		return
	}
	if !found {
		writeError(w, http.StatusNotFound, codeNotFound, fmt.Sprintf("no decision record for %s:%s", appID, orderNo))
		return
	}
	key := evidenceKey(rec, kind)
	if key == "" {
		writeError(w, http.StatusNotFound, codeNotFound,
			fmt.Sprintf("no %s stored for %s:%s (evidence %s)", kind, appID, orderNo, rec.Evidence.Status))
		return
	}
	url, err := s.d.Links.Link(ctx, key, LinkTTL)
	switch {
	case errors.Is(err, ErrNotStored):
		writeError(w, http.StatusNotFound, codeNotFound,
			fmt.Sprintf("the %s of %s:%s is no longer stored (expired or purged)", kind, appID, orderNo))
		return
	case err != nil:
		s.unavailable(w, "evidence object", err)
		return
	}
	w.Header().Set("Location", url)
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusFound)
	s.d.Audit.Info(audit.Message(audit.ActionEvidenceLink), audit.Fields(audit.Event{
		Action: audit.ActionEvidenceLink, Actor: k.ID, AppID: appID, OrderNo: orderNo, Keys: []string{key},
	})...)
}

// evidenceKey is the object key of one kind of an order's evidence as its
// record lists it, or "" when the record lists none.
func evidenceKey(rec *orderstore.Record, kind string) string {
	if kind == kindManifest {
		return rec.Evidence.ManifestKey
	}
	for _, f := range rec.Evidence.Files {
		if f.Kind == kind {
			return f.Key
		}
	}
	return ""
}

// getOpenAPI is GET /v1/openapi.json (no key needed).
func (s *Server) getOpenAPI(w http.ResponseWriter, r *http.Request) {
	if methodNotAllowed(w, r, http.MethodGet) {
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "public, max-age=300")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(OpenAPI)
}
