package worker

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/facesync/facesync/storage"
	"github.com/facesync/facesync/worker/idasc"
	"github.com/facesync/facesync/worker/orderstore"
)

// MaskIDNo masks an id number: 12 characters or more keep the first 3 and
// last 4, shorter ones only the last 2.
func MaskIDNo(s string) string {
	r := []rune(s)
	keepHead, keepTail := 0, 2
	if len(r) >= 12 {
		keepHead, keepTail = 3, 4
	}
	for i := range r {
		if i >= keepHead && i < len(r)-keepTail {
			r[i] = '*'
		}
	}
	return string(r)
}

// MaskName keeps a name's first character.
func MaskName(s string) string {
	r := []rune(s)
	for i := 1; i < len(r); i++ {
		r[i] = '*'
	}
	return string(r)
}

// recordFromResult builds a passed or failed record from a provider answer,
// masking PII on the way in.
func recordFromResult(appID, orderNo string, res *idasc.Result, status string) *orderstore.Record {
	return &orderstore.Record{Decision: orderstore.Decision{
		AppID: appID, OrderNo: orderNo, Status: status,
		Code: res.Code, Msg: res.Msg,
		BizSeqNo: res.BizSeqNo, TransactionTime: res.TransactionTime, OccurredTime: res.OccurredTime,
		LiveRate: res.LiveRate, Similarity: res.Similarity,
		IDType: res.IDType, IDNo: MaskIDNo(res.IDNo), Name: MaskName(res.Name),
	}}
}

func errorRecord(appID, orderNo, code, msg string) *orderstore.Record {
	return &orderstore.Record{Decision: orderstore.Decision{
		AppID: appID, OrderNo: orderNo, Status: orderstore.StatusError, Code: code, Msg: msg,
	}}
}

// manifestFor returns the manifest of rec's evidence files: the record's
// decision fields (PII already masked), then when they were fetched and
// the files.
func manifestFor(rec *orderstore.Record, files []storage.File, fetchedAt time.Time) (*storage.Manifest, error) {
	d, err := json.Marshal(rec.Decision)
	if err != nil {
		return nil, fmt.Errorf("encode manifest decision: %w", err)
	}
	return &storage.Manifest{
		AppID: rec.AppID, OrderNo: rec.OrderNo, Decision: d,
		FetchedAt: fetchedAt.UTC().Format(time.RFC3339), Files: files,
	}, nil
}
