// Package audit writes facesync's audit events: one JSON line for every
// read of evidence through facesync (`verify`, the HTTP API's evidence
// links) and every purge, once the action is done. The lines go out at
// info level whatever FACESYNC_LOG_FORMAT and FACESYNC_LOG_LEVEL say, with
// "audit":true so that a log pipeline can route them apart:
//
//	{"level":"info","ts":"2026-12-01T15:04:05.000Z","msg":"purge","audit":true,
//	 "action":"purge","actor":"dpo","app_id":"TIDA0001","order_no":"ord1","keys":["evidence/..."]}
//
// An event names the order and object keys, never a person: no name, id
// number, score or free text an operator typed.
package audit

import (
	"io"
	"strings"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Actions of audit events.
const (
	ActionVerify       = "verify"
	ActionEvidenceLink = "evidence_link"
	ActionPurge        = "purge"
)

// Event is one audit event.
type Event struct {
	Action string // ActionVerify, ActionEvidenceLink or ActionPurge
	// Actor is who acted: the API key id for evidence_link, the
	// --operator of a command (default the OS user name or uid:N).
	Actor   string
	AppID   string
	OrderNo string
	// Keys are the object keys concerned: read, linked or deleted.
	Keys []string
	// Fields are further fields of the event (a receipt key, a count);
	// they must hold no personal information.
	Fields []zap.Field
}

// Logger returns a logger that writes audit lines as JSON on w at info
// level, whatever the process's own log settings. Log events on it with
// Fields; Write does both.
func Logger(w io.Writer) *zap.Logger {
	enc := zap.NewProductionEncoderConfig()
	enc.TimeKey = "ts"
	enc.EncodeTime = zapcore.ISO8601TimeEncoder
	return zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(enc), zapcore.AddSync(w), zapcore.InfoLevel))
}

// Fields are the zap fields of e: "audit":true, action, actor, app_id,
// order_no, keys (an empty list rather than none), then e.Fields.
func Fields(e Event) []zap.Field {
	keys := e.Keys
	if keys == nil {
		keys = []string{}
	}
	fs := []zap.Field{
		zap.Bool("audit", true), zap.String("action", e.Action), zap.String("actor", e.Actor),
		zap.String("app_id", e.AppID), zap.String("order_no", e.OrderNo), zap.Strings("keys", keys),
	}
	return append(fs, e.Fields...)
}

// Message is the log message of an action: its name with spaces
// ("evidence link").
func Message(action string) string { return strings.ReplaceAll(action, "_", " ") }

// Write writes e to w as one audit line.
func Write(w io.Writer, e Event) error {
	l := Logger(w)
	l.Info(Message(e.Action), Fields(e)...)
	return l.Sync()
}
