package orderstore

import (
	"github.com/facesync/facesync/storage"
)

// Decision statuses of a record.
const (
	StatusPassed = "passed"
	StatusFailed = "failed"
	StatusError  = "error"
)

// Evidence statuses of a record.
const (
	EvidencePending     = "pending"
	EvidenceStored      = "stored"
	EvidenceUnavailable = "unavailable"
	EvidenceSkipped     = "skipped"
	EvidenceFailed      = "failed"
)

// The worker's own codes for status error: words, where provider codes are
// digits.
const (
	CodeUnknownApp       = "unknown_app"
	CodeNoResult         = "no_result"
	CodeProviderRejected = "provider_rejected"
	CodeProviderRefused  = "provider_refused"
	CodeProviderRequest  = "provider_request"
	CodeProviderHTTP4xx  = "provider_http_4xx"
	CodeRetriesExhausted = "retries_exhausted"
)

// Decision is the part of a record that a manifest repeats: every field but
// evidence, in the contract's order. id_no and name are masked before a
// Decision is built; nothing unmasked is ever stored.
type Decision struct {
	AppID           string `json:"app_id"`
	OrderNo         string `json:"order_no"`
	Status          string `json:"status"`
	Code            string `json:"code"`
	Msg             string `json:"msg"`
	Category        string `json:"category,omitempty"` // failed records only
	BizSeqNo        string `json:"biz_seq_no"`
	TransactionTime string `json:"transaction_time"`
	OccurredTime    string `json:"occurred_time"`
	LiveRate        string `json:"live_rate"`
	Similarity      string `json:"similarity"`
	IDType          string `json:"id_type"`
	IDNo            string `json:"id_no"`
	Name            string `json:"name"`
	DecidedAt       string `json:"decided_at"`
}

// Record is the decision record: a JSON string under RecordKey and the
// result of the faceid:fetch_result task.
type Record struct {
	Decision
	Evidence Evidence `json:"evidence"`
}

// Final reports whether the record's evidence has reached a final state:
// anything but pending.
func (r *Record) Final() bool { return r.Evidence.Status != EvidencePending }

// Evidence is the record's evidence part. Msg says why evidence is
// unavailable or failed.
type Evidence struct {
	Status      string         `json:"status"`
	ManifestKey string         `json:"manifest_key,omitempty"`
	Files       []storage.File `json:"files"`
	Msg         string         `json:"msg,omitempty"`
}
