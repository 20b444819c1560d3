package storage

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"
)

// ReceiptTimeFormat is how a receipt's purged_at is written, in its body
// and its key: RFC 3339 UTC to the millisecond, so that two purges of one
// order never share a key.
const ReceiptTimeFormat = "2006-01-02T15:04:05.000Z07:00"

// maxReceiptText bounds the free-text fields of a receipt.
const maxReceiptText = 1024

// ErrReceiptExists means a receipt with the same key is already stored;
// receipts are never overwritten.
var ErrReceiptExists = errors.New("receipt already exists")

// Receipt is the record of one purge, which an auditor keeps. It
// names the order and the object versions deleted, with their hashes; it
// holds no name, id number or score.
type Receipt struct {
	AppID   string
	OrderNo string
	// PurgedAt is when the purge finished; zero means now.
	PurgedAt time.Time
	Reason   string
	Operator string
	// Objects are the versions this purge deleted; empty when nothing was
	// left to delete.
	Objects []DeletedObject
}

// receiptJSON is the stored form; field order and names are the
// contract's.
type receiptJSON struct {
	AppID    string          `json:"app_id"`
	OrderNo  string          `json:"order_no"`
	PurgedAt string          `json:"purged_at"`
	Reason   string          `json:"reason"`
	Operator string          `json:"operator"`
	Objects  []DeletedObject `json:"objects"`
}

// PutReceipt stores r at {prefix}{app_id}/{order_no}/{purged_at}.json and
// returns the key. prefix is FACESYNC_S3_RECEIPT_PREFIX (empty means
// DefaultReceiptPrefix); a prefix inside the evidence prefix (or around
// it) is refused, so that lifecycle rules never expire a receipt. A
// receipt is written once (If-None-Match: *); a second one at the same
// key gets ErrReceiptExists. Reason and Operator are required.
func (s *S3) PutReceipt(ctx context.Context, prefix string, r Receipt) (string, error) {
	if prefix == "" {
		prefix = DefaultReceiptPrefix
	}
	if err := CheckReceiptPrefix(prefix, s.cfg.Prefix); err != nil {
		return "", err
	}
	if err := checkIDs(r.AppID, r.OrderNo); err != nil {
		return "", err
	}
	if r.Reason == "" || len(r.Reason) > maxReceiptText {
		return "", fmt.Errorf("storage: receipt reason must be 1 to %d bytes", maxReceiptText)
	}
	if r.Operator == "" || len(r.Operator) > maxReceiptText {
		return "", fmt.Errorf("storage: receipt operator must be 1 to %d bytes", maxReceiptText)
	}
	at := r.PurgedAt
	if at.IsZero() {
		at = s.cfg.NowFunc()
	}
	stamp := at.UTC().Format(ReceiptTimeFormat)
	objects := r.Objects
	if objects == nil {
		objects = []DeletedObject{} // "objects": [], not null
	}
	data, err := json.MarshalIndent(receiptJSON{
		AppID: r.AppID, OrderNo: r.OrderNo, PurgedAt: stamp,
		Reason: r.Reason, Operator: r.Operator, Objects: objects,
	}, "", "  ")
	if err != nil {
		return "", fmt.Errorf("storage: encode receipt: %w", err)
	}
	data = append(data, '\n')
	key := prefix + r.AppID + "/" + r.OrderNo + "/" + stamp + ".json"
	if _, err := s.client.PutObject(ctx, s.putOnceInput(key, data)); err != nil {
		if httpStatus(err) == http.StatusPreconditionFailed {
			return "", fmt.Errorf("storage: %s: %w", key, ErrReceiptExists)
		}
		return "", fmt.Errorf("storage: put receipt %s: %w", key, err)
	}
	return key, nil
}
