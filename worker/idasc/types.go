// Package idasc is a client for the WeBank FaceID (人脸核身) server API:
// access tokens, SIGN tickets and the /api/server/sync result query, with
// the provider's answers classified the way the worker branches on them.
package idasc

import (
	"errors"
	"fmt"
)

// Provider codes the worker branches on.
const (
	CodeOK       = "0"        // verified, same person
	CodeNotReady = "66660011" // no result yet
	CodeRejected = "400101"   // illegal request: signature or ticket refused
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

// Class is how the worker treats a provider answer or a failure to get one
// (CONTRACT.md section 2).
type Class int

// The classes of CONTRACT.md section 2.
const (
	ClassNone      Class = iota // no error: code 0
	ClassTransient              // network error, timeout, HTTP 5xx/429, malformed JSON, invalid base64: retry with backoff
	ClassNotReady               // code 66660011: retry until FACESYNC_RESULT_WAIT
	ClassRejected               // code 400101: refresh the ticket generation and retry
	ClassHTTP4xx                // HTTP 4xx other than 429: record error provider_http_4xx
	ClassFailed                 // any other non-zero code: a definitive failure
	ClassInvalid                // the request cannot be made (bad argument, oversize evidence): retrying will not help
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

// IsRejected reports whether the provider refused the signature or ticket (400101).
func IsRejected(err error) bool { return ClassOf(err) == ClassRejected }

// IsTransient reports whether err is worth retrying with backoff.
func IsTransient(err error) bool { return ClassOf(err) == ClassTransient }

// IsHTTP4xx reports whether the provider answered HTTP 4xx other than 429.
func IsHTTP4xx(err error) bool { return ClassOf(err) == ClassHTTP4xx }

// IsFailed reports whether the provider gave a definitive non-zero code.
func IsFailed(err error) bool { return ClassOf(err) == ClassFailed }
