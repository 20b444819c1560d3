// Package tasks is facesync's task contract for partner backends: the asynq
// task types, queues and payloads, and an enqueue helper. It imports only
// asynq and the standard library, so partners can depend on it cheaply.
//
// A partner enqueues one faceid:fetch_result task when a user's face
// session ends; facesync workers do the rest. Partners in other languages
// enqueue the same JSON payload on queue "facesync" with any asynq client.
//
// Enqueueing an order twice is harmless: Enqueue reports the second as a
// duplicate, whatever state the first is in. Even a task asynq archived
// without a decision (a pod killed on its last attempt) is run again by the
// fleet itself; see Enqueue.
package tasks

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"time"
	"unicode/utf8"

	"github.com/hibiken/asynq"
)

// Task types. They are stored with every queued task: renaming one strands
// work already in Redis.
const (
	TypeFetchResult    = "faceid:fetch_result"
	TypeFetchEvidence  = "faceid:fetch_evidence"
	TypeDeliverWebhook = "faceid:deliver_webhook"
)

// Queues the two task types run on.
const (
	QueueResult   = "facesync"
	QueueEvidence = "facesync_evidence"
	QueueWebhook  = "facesync_webhook"
)

// Values of get_file, as the provider defines them.
const (
	GetFileNone  = "0" // decision only, no evidence task
	GetFileBoth  = "1" // photo and video (the default)
	GetFilePhoto = "2" // photo only
	GetFileVideo = "3" // video only
)

// DefaultRetention keeps a finished fetch_result task, and with it its task
// ID and result, for a day: a duplicate enqueued within it is refused by
// asynq before any worker sees it.
const DefaultRetention = 24 * time.Hour

// DefaultMaxRetry is the retry budget the enqueue helper gives a task. The
// worker bounds its own waits and does not depend on it.
const DefaultMaxRetry = 100

// FetchResult is the payload of a faceid:fetch_result task.
type FetchResult struct {
	AppID   string  `json:"app_id"`
	OrderNo string  `json:"order_no"`
	GetFile GetFile `json:"get_file,omitempty"`
}

// FetchEvidence is the payload of a faceid:fetch_evidence task, which the
// worker enqueues itself once the decision is recorded.
type FetchEvidence struct {
	AppID     string    `json:"app_id"`
	OrderNo   string    `json:"order_no"`
	GetFile   GetFile   `json:"get_file"`
	DecidedAt time.Time `json:"decided_at"`
	// NotBefore is when the first evidence call may go out; the task is
	// scheduled at the whole second at or before it, and the worker waits
	// the rest. Zero (tasks enqueued before it existed): no wait.
	NotBefore time.Time `json:"not_before,omitzero"`
}

// GetFile is the get_file value. It decodes from a JSON string or number
// ("1" or 1) and an absent or empty value means GetFileBoth.
type GetFile string

// UnmarshalJSON accepts a JSON string, a JSON number or null.
func (g *GetFile) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case bytes.Equal(b, []byte("null")):
		*g = ""
		return nil
	case len(b) >= 2 && b[0] == '"' && b[len(b)-1] == '"' && bytes.IndexByte(b, '\\') < 0 && utf8.Valid(b):
		// No escape: the text between the quotes is the value.
		*g = GetFile(b[1 : len(b)-1])
		return nil
	case len(b) > 0 && b[0] == '"':
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*g = GetFile(s)
		return nil
	}
	var n json.Number
	if err := json.Unmarshal(b, &n); err != nil {
		return fmt.Errorf("get_file must be a string or a number, got %.20s", b)
	}
	*g = GetFile(n.String())
	return nil
}

// Or returns g, or GetFileBoth when g is empty.
func (g GetFile) Or() GetFile {
	if g == "" {
		return GetFileBoth
	}
	return g
}

// ErrInvalidPayload is wrapped by every validation error of this package.
var ErrInvalidPayload = errors.New("invalid payload")

// ValidID reports whether s is a valid app_id or order_no: 1 to 32
// characters of A-Z a-z 0-9 _ -. Nothing else may become part of a Redis
// key or an object key.
func ValidID(s string) bool {
	if len(s) < 1 || len(s) > 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

func validate(appID, orderNo string, g GetFile) error {
	if !ValidID(appID) {
		return fmt.Errorf("%w: app_id %s: want 1 to 32 characters of A-Z a-z 0-9 _ -", ErrInvalidPayload, describe(appID))
	}
	if !ValidID(orderNo) {
		return fmt.Errorf("%w: order_no %s: want 1 to 32 characters of A-Z a-z 0-9 _ -", ErrInvalidPayload, describe(orderNo))
	}
	switch g {
	case "", GetFileNone, GetFileBoth, GetFilePhoto, GetFileVideo:
		return nil
	}
	return fmt.Errorf("%w: get_file %s: want \"0\", \"1\", \"2\" or \"3\"", ErrInvalidPayload, describe(string(g)))
}

// describe names a bad value without echoing much of it: payloads come
// from outside and may hold anything.
func describe(s string) string {
	switch {
	case s == "":
		return "is missing"
	case len(s) > 32:
		return fmt.Sprintf("is %d bytes long", len(s))
	}
	return fmt.Sprintf("%q is malformed", s)
}

// Validate checks the ids and get_file.
func (p FetchResult) Validate() error { return validate(p.AppID, p.OrderNo, p.GetFile) }

// Validate checks the ids and get_file.
func (p FetchEvidence) Validate() error {
	if err := validate(p.AppID, p.OrderNo, p.GetFile); err != nil {
		return err
	}
	if p.GetFile.Or() == GetFileNone {
		return fmt.Errorf("%w: get_file \"0\" asks for no evidence", ErrInvalidPayload)
	}
	return nil
}

// ParseFetchResult decodes and validates a faceid:fetch_result payload.
// Every error wraps ErrInvalidPayload and says what is wrong.
func ParseFetchResult(data []byte) (FetchResult, error) {
	var p FetchResult
	if err := parse(data, &p); err != nil {
		return FetchResult{}, err
	}
	p.GetFile = p.GetFile.Or()
	return p, nil
}

// ParseFetchEvidence decodes and validates a faceid:fetch_evidence payload.
func ParseFetchEvidence(data []byte) (FetchEvidence, error) {
	var p FetchEvidence
	if err := parse(data, &p); err != nil {
		return FetchEvidence{}, err
	}
	p.GetFile = p.GetFile.Or()
	return p, nil
}

func parse(data []byte, p interface{ Validate() error }) error {
	if err := json.Unmarshal(data, p); err != nil {
		return fmt.Errorf("%w: not a JSON object with app_id and order_no: %v", ErrInvalidPayload, err)
	}
	return p.Validate()
}

// TaskID is the asynq task ID of both task types for one order, so that a
// duplicate of a queued order is refused by asynq itself.
func TaskID(appID, orderNo string) string { return appID + ":" + orderNo }

// NewFetchResultTask returns the task a partner enqueues when a face session
// ends, with the queue, task ID, retention and retry budget set. Options
// given are applied after those.
func NewFetchResultTask(p FetchResult, opts ...asynq.Option) (*asynq.Task, error) {
	return build(TypeFetchResult, p, []asynq.Option{
		asynq.Queue(QueueResult),
		asynq.TaskID(TaskID(p.AppID, p.OrderNo)),
		asynq.Retention(DefaultRetention),
		asynq.MaxRetry(DefaultMaxRetry),
	}, opts)
}

// NewFetchEvidenceTask returns the evidence task the worker enqueues after a
// decision, for its first call to go out no earlier than notBefore. asynq
// schedules by whole seconds (it stores and compares Unix seconds), so
// rounding up would land the call anywhere up to a second late: the task
// is scheduled at the whole second at or before notBefore instead, and
// the payload's NotBefore tells the worker how long to wait after that.
func NewFetchEvidenceTask(p FetchEvidence, notBefore time.Time, opts ...asynq.Option) (*asynq.Task, error) {
	p.NotBefore = notBefore
	return build(TypeFetchEvidence, p, []asynq.Option{
		asynq.Queue(QueueEvidence),
		asynq.TaskID(TaskID(p.AppID, p.OrderNo)),
		asynq.Retention(DefaultRetention),
		asynq.MaxRetry(DefaultMaxRetry),
		asynq.ProcessAt(notBefore.Truncate(time.Second)),
	}, opts)
}

// Headers is an option of NewFetchResultTask and Enqueue that sets the
// task's asynq headers. A Go partner uses it to carry its trace context
// (the W3C traceparent and tracestate) to the worker, which continues the
// trace; asynq ignores it as an option. This package never imports a
// tracing library: the caller builds the headers (with OpenTelemetry, a
// propagation.MapCarrier filled by the TraceContext propagator).
func Headers(h map[string]string) asynq.Option { return headersOption(maps.Clone(h)) }

// headersOption carries task headers through a list of asynq options.
type headersOption map[string]string

func (o headersOption) String() string { return fmt.Sprintf("Headers(%d)", len(o)) }

// Type is not one of asynq's: asynq's own option handling skips it.
func (o headersOption) Type() asynq.OptionType { return asynq.OptionType(-1) }
func (o headersOption) Value() any             { return map[string]string(o) }

// build validates and encodes payload p into a task of typ with the
// options base, then opts (which come later and win).
func build(typ string, p interface{ Validate() error }, base, opts []asynq.Option) (*asynq.Task, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	b, err := json.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("encode payload: %w", err)
	}
	return newTask(typ, b, append(base, opts...)), nil
}

// newTask builds a task of typ, taking the headers out of opts.
func newTask(typ string, payload []byte, opts []asynq.Option) *asynq.Task {
	var headers map[string]string
	rest := opts[:0:0]
	for _, o := range opts {
		if h, ok := o.(headersOption); ok {
			if headers == nil {
				headers = map[string]string{}
			}
			maps.Copy(headers, h)
			continue
		}
		rest = append(rest, o)
	}
	if headers == nil {
		return asynq.NewTask(typ, payload, rest...)
	}
	return asynq.NewTaskWithHeaders(typ, payload, headers, rest...)
}

// Enqueuer is the part of *asynq.Client the enqueue helper needs.
type Enqueuer interface {
	EnqueueContext(ctx context.Context, task *asynq.Task, opts ...asynq.Option) (*asynq.TaskInfo, error)
}

// Enqueue enqueues an order. An order whose task ID is already taken is
// not an error: duplicate reports it "already there", and nothing is
// enqueued. That covers every state asynq keeps a task in: pending,
// scheduled, retrying or running (the worker does the work once), completed
// within its retention (the record is written), and archived. An archived
// order is not stuck: within FACESYNC_RECONCILE_INTERVAL (default 30 s;
// twice that when the pod holding the reconciler's lock died) the fleet
// runs it again with a fresh retry budget if it has no record yet, up to
// three times, and then writes its terminal record (status error, code
// retries_exhausted). A partner therefore never needs to delete and
// re-enqueue an order itself.
func Enqueue(ctx context.Context, c Enqueuer, p FetchResult, opts ...asynq.Option) (duplicate bool, err error) {
	t, err := NewFetchResultTask(p, opts...)
	if err != nil {
		return false, err
	}
	return enqueue(ctx, c, t)
}

// EnqueueEvidence enqueues an evidence task to run no earlier than
// notBefore, counting an already-queued one as success.
func EnqueueEvidence(ctx context.Context, c Enqueuer, p FetchEvidence, notBefore time.Time, opts ...asynq.Option) (duplicate bool, err error) {
	t, err := NewFetchEvidenceTask(p, notBefore, opts...)
	if err != nil {
		return false, err
	}
	return enqueue(ctx, c, t)
}

func enqueue(ctx context.Context, c Enqueuer, t *asynq.Task) (bool, error) {
	_, err := c.EnqueueContext(ctx, t)
	switch {
	case errors.Is(err, asynq.ErrTaskIDConflict), errors.Is(err, asynq.ErrDuplicateTask):
		return true, nil
	case err != nil:
		return false, fmt.Errorf("enqueue %s: %w", t.Type(), err)
	}
	return false, nil
}

// Webhook events: an order's decision became final,
// and its evidence reached a final state.
const (
	EventDecision = "decision"
	EventEvidence = "evidence"
)

// WebhookMaxRetry is the retry budget of a webhook delivery: more than any
// wait needs, since the worker archives a delivery itself once the webhook
// wait has passed.
const WebhookMaxRetry = 100000

// DeliverWebhook is the payload of a faceid:deliver_webhook task, which the
// worker enqueues itself when an order's event becomes due.
type DeliverWebhook struct {
	AppID   string `json:"app_id"`
	OrderNo string `json:"order_no"`
	Event   string `json:"event"`
	// Since is when the delivery's wait started: the event's time, or when
	// an operator ran an archived delivery again. The worker always sets
	// it; without it only the retry budget ends the retries.
	Since time.Time `json:"since,omitzero"`
}

// Validate checks the ids and the event.
func (p DeliverWebhook) Validate() error {
	if err := validate(p.AppID, p.OrderNo, ""); err != nil {
		return err
	}
	if p.Event != EventDecision && p.Event != EventEvidence {
		return fmt.Errorf("%w: event %s: want \"decision\" or \"evidence\"", ErrInvalidPayload, describe(p.Event))
	}
	return nil
}

// ParseDeliverWebhook decodes and validates a faceid:deliver_webhook
// payload.
func ParseDeliverWebhook(data []byte) (DeliverWebhook, error) {
	var p DeliverWebhook
	if err := parse(data, &p); err != nil {
		return DeliverWebhook{}, err
	}
	return p, nil
}

// WebhookID is the task ID of an event's delivery and the delivery id
// receivers see (Facesync-Delivery): one event, one task, however often
// the order was enqueued.
func WebhookID(appID, orderNo, event string) string { return appID + ":" + orderNo + ":" + event }

// NewDeliverWebhookTask returns the delivery task of one event, with the
// queue, task ID, retention and retry budget set.
func NewDeliverWebhookTask(p DeliverWebhook, opts ...asynq.Option) (*asynq.Task, error) {
	return build(TypeDeliverWebhook, p, []asynq.Option{
		asynq.Queue(QueueWebhook),
		asynq.TaskID(WebhookID(p.AppID, p.OrderNo, p.Event)),
		asynq.Retention(DefaultRetention),
		asynq.MaxRetry(WebhookMaxRetry),
	}, opts)
}

// EnqueueWebhook enqueues an event's delivery, counting one already there
// as success.
func EnqueueWebhook(ctx context.Context, c Enqueuer, p DeliverWebhook, opts ...asynq.Option) (duplicate bool, err error) {
	t, err := NewDeliverWebhookTask(p, opts...)
	if err != nil {
		return false, err
	}
	return enqueue(ctx, c, t)
}
