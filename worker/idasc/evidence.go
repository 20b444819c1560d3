package idasc

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/facesync/facesync/worker/idasc/internal/evjson"
)

// SyncEvidence asks for the decision on an order together with its evidence
// and streams each decoded file to fn as the body arrives, so memory does
// not grow with the size of photo or video. getFile is the provider's
// get_file: "1" photo and video, "2" photo only, "3" video only. fn is
// called once per non-empty photo or video with its kind (KindPhoto or
// KindVideo) and a reader of the decoded bytes, which is valid only until
// fn returns; evidence asked for too early is simply missing, so fn may not
// be called at all. maxBytes caps each decoded file.
//
// The call is bounded by the evidence timeout (WithEvidenceTimeout), fn's
// work included, and the body is not subject to the small calls' size cap.
// Results and errors are as for Sync, and also: a file over maxBytes is
// ClassInvalid; truncated or malformed JSON and invalid base64 are
// ClassTransient; an error from fn is returned in an *Error of its own class
// (ClassTransient unless fn returned an *Error), with errors.Is and
// errors.As reaching it.
func (c *Client) SyncEvidence(ctx context.Context, req SyncRequest, getFile string, maxBytes int64, fn func(kind string, r io.Reader) error) (*Result, error) {
	switch {
	case getFile != "1" && getFile != "2" && getFile != "3":
		return nil, &Error{Op: opSync, Class: ClassInvalid, Err: fmt.Errorf("get_file %q asks for no evidence", getFile)}
	case maxBytes <= 0:
		return nil, &Error{Op: opSync, Class: ClassInvalid, Err: fmt.Errorf("evidence size cap %d is not positive", maxBytes)}
	case fn == nil:
		return nil, &Error{Op: opSync, Class: ClassInvalid, Err: errors.New("no evidence callback")}
	}
	q, red, err := syncQuery(req, getFile)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, c.evidenceTimeout)
	defer cancel()
	resp, err := c.send(ctx, opSync, "/api/server/sync", q, red)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	// fnErr tells the callback's own failures apart from the body's.
	var fnErr error
	fields, err := evjson.Extract(resp.Body, maxBytes, func(kind string, r io.Reader) error {
		if err := fn(kind, r); err != nil {
			fnErr = err
			return err
		}
		return nil
	})
	if err != nil {
		return nil, evidenceError(ctx, err, fnErr, red)
	}
	res, err := resultFromFields(fields.Top, fields.Result)
	if err != nil {
		return nil, &Error{Op: opSync, Class: ClassTransient, Err: red.err(err)}
	}
	return res, syncOutcome(res, red)
}

// evidenceError classifies a failure of the streaming decoder. The size
// cap is checked first: fn may have met it while reading and returned it.
func evidenceError(ctx context.Context, err, fnErr error, red *redactor) error {
	switch {
	case errors.Is(err, evjson.ErrTooLarge):
		return &Error{Op: opSync, Class: ClassInvalid, Err: red.err(err)}
	case errors.Is(err, evjson.ErrSyntax), errors.Is(err, evjson.ErrBase64):
		return &Error{Op: opSync, Class: ClassTransient, Err: red.err(err)}
	case fnErr != nil && errors.Is(err, fnErr):
		class := ClassOf(fnErr)
		if class == ClassNone {
			class = ClassTransient
		}
		return &Error{Op: opSync, Class: class, Err: withContextErr(ctx, red.err(err))}
	}
	return transportError(ctx, opSync, err, red)
}
