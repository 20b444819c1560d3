// Package idasc is a client for the WeBank FaceID (人脸核身) server API:
// access tokens, SIGN tickets and the /api/server/sync result query, with
// the provider's answers classified the way the worker branches on them.
package idasc

import (
	"errors"
	"fmt"
)

// Provider codes the worker branches on. The full classification is the
// table of classify.go (ClassTable); these name the codes callers and the
// fake provider need by name.
const (
	CodeOK              = "0"        // verified, same person
	CodeNotReady        = "66660011" // no result yet
	CodeRejected        = "400101"   // illegal request: signature or ticket refused
	CodeThrottled       = "400504"   // request rate too high
	CodeProviderNetwork = "66660021" // network trouble on the provider's side
)

// Evidence kinds, as named in object keys and manifests.
const (
	KindPhoto = "photo"
	KindVideo = "video"
)

// Result holds the small fields of a sync answer. Fields are read from
// `result`, falling back to the top level for bizSeqNo and transactionTime.
// result.success is deliberately absent: the provider sets it unreliably.
type Result struct {
	Code            string
	Msg             string
	OrderNo         string
	BizSeqNo        string
	TransactionTime string
	OccurredTime    string
	LiveRate        string
	Similarity      string
	IDNo            string
	IDType          string
	Name            string
}

// Class is how the worker treats a provider answer or a failure to get one.
type Class int

// The classes of provider answers.
const (
	ClassNone       Class = iota // no error: code 0
	ClassTransient               // network error, timeout, HTTP 5xx, malformed JSON, invalid base64, code 66660021: retry with backoff
	ClassNotReady                // code 66660011: retry until FACESYNC_RESULT_WAIT
	ClassRejected                // codes 400101, 400102, 66660001: refresh the ticket generation and retry
	ClassHTTP4xx                 // HTTP 4xx other than 429: record error provider_http_4xx
	ClassFailed                  // any other non-zero code: a definitive failure
	ClassInvalid                 // the request cannot be made (bad argument, oversize evidence): retrying will not help
	ClassThrottled               // codes 400504, 400506, HTTP 429: never a decision; retry, and the fleet pauses the app
	ClassRefused                 // codes 400103, 400104, 66660002, 66660030: an account problem, record error provider_refused
	ClassBadRequest              // codes 400502, 400601: our request, record error provider_request
)

// String names the class for logs and metrics.
func (c Class) String() string {
	switch c {
	case ClassNone:
		return "none"
	case ClassTransient:
		return "transient"
	case ClassNotReady:
		return "not_ready"
	case ClassRejected:
		return "rejected"
	case ClassHTTP4xx:
		return "http_4xx"
	case ClassFailed:
		return "failed"
	case ClassInvalid:
		return "invalid"
	case ClassThrottled:
		return "throttled"
	case ClassRefused:
		return "refused"
	case ClassBadRequest:
		return "bad_request"
	}
	return fmt.Sprintf("class(%d)", int(c))
}

// Error is the typed error every Client call returns. Code and Msg are the
// provider's when it answered with a non-zero code; HTTPStatus is set for
// non-200 answers. Its message never contains a secret, token, ticket or
// signature.
type Error struct {
	Op         string // "access_token", "api_ticket", "sync"
	Class      Class
	Code       string
	Msg        string
	HTTPStatus int
	Err        error // underlying cause, already redacted
}

func (e *Error) Error() string {
	s := "idasc " + e.Op + ": " + e.Class.String()
	if e.HTTPStatus != 0 {
		s += fmt.Sprintf(": http %d", e.HTTPStatus)
	}
	if e.Code != "" {
		s += ": code " + e.Code
	}
	if e.Msg != "" {
		s += ": " + e.Msg
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *Error) Unwrap() error { return e.Err }

// ClassOf returns the class of err: ClassNone for nil, the Error's class for
// an *Error anywhere in the chain, and ClassTransient for anything else.
func ClassOf(err error) Class {
	if err == nil {
		return ClassNone
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Class
	}
	return ClassTransient
}

// IsNotReady reports whether the provider has no result yet (66660011).
func IsNotReady(err error) bool { return ClassOf(err) == ClassNotReady }

// IsRejected reports whether the provider refused the signature, ticket or
// token (400101, 400102, 66660001).
func IsRejected(err error) bool { return ClassOf(err) == ClassRejected }

// IsTransient reports whether err is worth retrying with backoff. It holds
// for code 66660021 too; IsProviderNetwork tells that one apart.
func IsTransient(err error) bool { return ClassOf(err) == ClassTransient }

// IsProviderNetwork reports whether the provider answered 66660021 (network
// trouble on its side): transient, but only until FACESYNC_RESULT_WAIT has
// passed since the first such answer; then it is recorded failed, category
// session.
func IsProviderNetwork(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Class == ClassTransient && e.Code == CodeProviderNetwork
}

// IsThrottled reports whether the provider said the app calls too fast
// (400504, 400506 or HTTP 429). It is never a decision.
func IsThrottled(err error) bool { return ClassOf(err) == ClassThrottled }

// IsRefused reports whether the provider refused the app's account for the
// call (400103, 400104, 66660002, 66660030).
func IsRefused(err error) bool { return ClassOf(err) == ClassRefused }

// IsBadRequest reports whether the provider refused the request's version
// or body (400502, 400601).
func IsBadRequest(err error) bool { return ClassOf(err) == ClassBadRequest }

// IsHTTP4xx reports whether the provider answered HTTP 4xx other than 429.
func IsHTTP4xx(err error) bool { return ClassOf(err) == ClassHTTP4xx }

// IsFailed reports whether the provider gave a definitive non-zero code.
func IsFailed(err error) bool { return ClassOf(err) == ClassFailed }

// HasAnswer reports whether the provider answered the call: err is nil, or
// an *Error carrying a provider code or an HTTP status. It is false when
// no answer could be read (network error, time-out, a body cut short or
// not JSON, a failure of the evidence callback), which is what fleet-wide
// pacing needs to tell a probe that got no answer from one that did.
func HasAnswer(err error) bool {
	if err == nil {
		return true
	}
	var e *Error
	return errors.As(err, &e) && (e.Code != "" || e.HTTPStatus != 0)
}
