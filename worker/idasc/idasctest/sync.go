package idasctest

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"net/http"
	"time"

	"github.com/facesync/facesync/worker/idasc"
)

// syncStage is what an accepted sync request gets, by its place in the
// order's sequence (see Scenario).
type syncStage int

const (
	stageDecision syncStage = iota
	stageHTTP500
	stageTruncated
	stageNotReady
)

func (f *Fake) serveSync(w http.ResponseWriter, r *http.Request) {
	arrival := f.opts.Now()
	q := r.URL.Query()
	appID, orderNo, getFile := q.Get("app_id"), q.Get("order_no"), q.Get("get_file")
	rec := Request{Time: arrival, Path: r.URL.Path, AppID: appID, OrderNo: orderNo, GetFile: getFile}
	s := f.scenario(appID, orderNo)
	if s.Latency > 0 {
		t := time.NewTimer(s.Latency)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			f.record(rec) // HTTPStatus 0: the client went away
			return
		}
	}

	now := f.opts.Now()
	_, known := f.opts.Apps[appID]
	version, nonce, sign := q.Get("version"), q.Get("nonce"), q.Get("sign")
	live, dead := f.checkSign(appID, orderNo, version, nonce, sign, now)
	rec.Signed = known && live && version == idasc.Version && validNonce(nonce) && validOrderNo(orderNo)
	rec.DeadTicket = known && !live && dead
	if rec.DeadTicket {
		f.mu.Lock()
		f.app(appID).deadTicketRejections++
		f.mu.Unlock()
	}

	if known && s.ThrottleApp > 0 {
		f.openThrottle(appID, orderNo, now.Add(s.ThrottleApp))
	}
	a := syncAnswer{s: s, appID: appID, orderNo: orderNo, now: now}
	switch {
	case known && f.throttled(appID, now):
		a.code, a.msg = idasc.CodeThrottled, msgThrottled
		f.answer(w, a, rec)
		return
	case s.HTTPStatus != 0:
		rec.HTTPStatus = s.HTTPStatus
		f.record(rec)
		http.Error(w, http.StatusText(s.HTTPStatus), s.HTTPStatus)
		return
	case !known:
		a.code, a.msg = CodeUnknownApp, msgUnknownApp
		f.answer(w, a, rec)
		return
	case !rec.Signed:
		a.code, a.msg = CodeRejected, msgRejected
		f.answer(w, a, rec)
		return
	}

	key := orderKey(appID, orderNo)
	f.mu.Lock()
	st := f.orders[key]
	if st == nil {
		st = &orderState{first: now}
		f.orders[key] = st
	}
	n := st.accepted
	st.accepted++
	first := st.first
	f.mu.Unlock()

	step, scripted, rest := scriptAt(s.Script, n)
	switch {
	case scripted && step.HTTPStatus != 0:
		rec.HTTPStatus = step.HTTPStatus
		f.record(rec)
		http.Error(w, http.StatusText(step.HTTPStatus), step.HTTPStatus)
		return
	case scripted:
		a.code, a.msg = step.Code, msgFor(step.Code, step.Msg)
		f.answer(w, a, rec)
		return
	}
	n = rest

	stage := stageDecision
	if n < s.HTTP500 {
		stage = stageHTTP500
	} else if n -= s.HTTP500; n < s.Truncated {
		stage = stageTruncated
	} else if n -= s.Truncated; n < s.NotReady {
		stage = stageNotReady
	}

	switch stage {
	case stageHTTP500:
		rec.HTTPStatus = http.StatusInternalServerError
		f.record(rec)
		http.Error(w, http.StatusText(http.StatusInternalServerError), http.StatusInternalServerError)
		return
	case stageNotReady:
		a.code, a.msg = idasc.CodeNotReady, msgNotReady
		f.answer(w, a, rec)
		return
	}

	a.code, a.msg = s.Code, s.Msg
	if a.code == "" {
		a.code = idasc.CodeOK
	}
	a.msg = msgFor(a.code, a.msg)
	a.result = true
	a.occurred = first.Add(-30 * time.Second)
	if getFile == "1" || getFile == "2" {
		if e, ok := newEvidenceSpec(appID, orderNo, idasc.KindPhoto, s); ok {
			a.photo = &e
		}
	}
	if getFile == "1" || getFile == "3" {
		if e, ok := newEvidenceSpec(appID, orderNo, idasc.KindVideo, s); ok {
			a.video = &e
		}
	}
	delay := f.opts.EvidenceDelay
	if s.EvidenceDelay > 0 {
		delay = s.EvidenceDelay
	}
	a.ready = s.EvidenceDelay >= 0 && !now.Before(first.Add(delay))
	a.cut = stage == stageTruncated

	if stage == stageDecision && a.carriesEvidence() {
		f.mu.Lock()
		m := st.evidenced
		st.evidenced++
		f.mu.Unlock()
		if m < s.EvidenceHTTP500 {
			rec.HTTPStatus = http.StatusInternalServerError
			f.record(rec)
			http.Error(w, http.StatusText(http.StatusInternalServerError), http.StatusInternalServerError)
			return
		}
		a.cut = m-s.EvidenceHTTP500 < s.EvidenceTruncated
	}
	f.answer(w, a, rec)
}

// checkSign reports whether sign is the signature of the request with a
// live ticket of the app, and else whether it is the signature with a
// ticket that has died.
func (f *Fake) checkSign(appID, orderNo, version, nonce, sign string, now time.Time) (live, dead bool) {
	if sign == "" {
		return false, false
	}
	f.mu.Lock()
	var tickets []*ticket
	if a := f.apps[appID]; a != nil {
		tickets = append(tickets, a.tickets...)
	}
	f.mu.Unlock()
	// Newest first: a well-behaved client signs with the latest ticket.
	for i := len(tickets) - 1; i >= 0; i-- {
		t := tickets[i]
		if idasc.Sign(appID, orderNo, version, t.value, nonce) != sign {
			continue
		}
		f.mu.Lock()
		ok := t.live(now)
		f.mu.Unlock()
		if ok {
			return true, false
		}
		dead = true
	}
	return false, dead
}

// syncAnswer is one JSON answer to /api/server/sync.
type syncAnswer struct {
	s              Scenario
	appID, orderNo string
	code, msg      string
	now, occurred  time.Time
	result         bool          // the answer has a result object
	photo, video   *evidenceSpec // nil: the field is left out
	ready          bool          // evidence fields carry their bytes; else they are empty
	cut            bool          // the answer stops mid-evidence, or mid-body when it carries none
}

func (a *syncAnswer) carriesEvidence() bool {
	return a.ready && (a.photo != nil || a.video != nil)
}

// tampered is the evidence whose base64 a scenario corrupts or cuts: the
// video, or the photo when there is no video.
func (a *syncAnswer) tampered() *evidenceSpec {
	if a.video != nil {
		return a.video
	}
	return a.photo
}

// answer writes a and records rec with what was answered.
func (f *Fake) answer(w http.ResponseWriter, a syncAnswer, rec Request) {
	rec.Code = a.code
	rec.HTTPStatus = http.StatusOK
	rec.Truncated = a.cut
	rec.Photo = a.ready && a.photo != nil && a.photo.size > 0
	rec.Video = a.ready && a.video != nil && a.video.size > 0
	f.record(rec)

	w.Header().Set("Content-Type", "application/json;charset=UTF-8")
	if a.cut && !a.carriesEvidence() {
		// Small enough to build whole, so it can be cut in half.
		var buf bytes.Buffer
		_ = a.writeTo(&buf) // a bytes.Buffer never fails
		body := buf.Bytes()
		_, _ = w.Write(body[:len(body)/2])
		abort(w)
		return
	}
	bw := bufio.NewWriterSize(w, 32<<10)
	err := a.writeTo(bw)
	if err == nil {
		_ = bw.Flush() // the client went away; nothing to do
		return
	}
	if errors.Is(err, errCut) {
		_ = bw.Flush()
		abort(w)
	}
}

// abort sends what was written so far and closes the connection, so the
// client sees a body cut short rather than a well-formed end.
func abort(w http.ResponseWriter) {
	rc := http.NewResponseController(w)
	_ = rc.Flush()
	if conn, _, err := rc.Hijack(); err == nil {
		_ = conn.Close()
	}
	// Without hijacking (HTTP/2, a recorder) the body merely ends early.
}

// writeTo writes the answer as JSON to out, streaming the evidence.
func (a *syncAnswer) writeTo(out io.Writer) error {
	j := jsonWriter{escSlash: a.s.EscapeSlashes}
	biz := bizSeqNo(a.appID, a.orderNo)
	ts := stamp(a.now)
	j.begin()
	if a.result && a.s.ResultFirst {
		if err := a.writeResult(out, &j, biz, ts); err != nil {
			return err
		}
	}
	if a.s.CodeAsNumber && a.code != "" && digits(a.code) {
		j.num("code", a.code)
	} else {
		j.str("code", a.code)
	}
	j.str("msg", a.msg)
	j.str("bizSeqNo", biz)
	if a.result && !a.s.ResultFirst {
		if err := a.writeResult(out, &j, biz, ts); err != nil {
			return err
		}
	}
	j.str("transactionTime", ts)
	j.str("app_id", a.appID)
	j.str("order_no", a.orderNo)
	j.end()
	_, err := out.Write(j.take())
	return err
}

// writeResult writes the result member, photo and video in the middle as
// in the provider's example, so clients cannot count on them coming last.
func (a *syncAnswer) writeResult(out io.Writer, j *jsonWriter, biz, ts string) error {
	idNo, name := a.s.IDNo, a.s.Name
	if idNo == "" {
		idNo = "110101199003071234"
	}
	if name == "" {
		name = "张三"
	}
	j.key("result")
	j.begin()
	j.str("bizSeqNo", biz)
	j.str("transactionTime", ts)
	j.str("orderNo", a.orderNo)
	j.str("idNo", idNo)
	j.str("idType", "01")
	j.str("name", name)
	target := a.tampered()
	for _, f := range []struct {
		name string
		e    *evidenceSpec
	}{{idasc.KindVideo, a.video}, {idasc.KindPhoto, a.photo}} {
		if f.e == nil {
			continue
		}
		j.openString(f.name)
		if a.ready {
			if _, err := out.Write(j.take()); err != nil {
				return err
			}
			corruptAt, cutAt := int64(-1), int64(-1)
			if f.e == target {
				if a.s.InvalidBase64 {
					corruptAt = f.e.b64Len() / 2
				}
				if a.cut {
					cutAt = f.e.b64Len() / 2
				}
			}
			if err := streamBase64(out, *f.e, a.s, corruptAt, cutAt); err != nil {
				return err
			}
		}
		j.closeString()
	}
	j.str("liveRate", "100")
	j.str("similarity", "95.0")
	j.str("occurredTime", stamp(a.occurred))
	j.boolean("success", false)
	j.end()
	return nil
}

// bizSeqNo returns the order's business sequence number: 32 digits derived
// from the app and order, so repeated queries agree.
func bizSeqNo(appID, orderNo string) string {
	sum := sha256.Sum256([]byte(orderKey(appID, orderNo)))
	var b [32]byte
	for i := range b {
		b[i] = '0' + sum[i]%10
	}
	return string(b[:])
}

// validNonce reports whether s is 32 ASCII letters and digits.
func validNonce(s string) bool {
	if len(s) != 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z') {
			return false
		}
	}
	return true
}

// validOrderNo reports whether s is 1 to 32 characters of A-Z a-z 0-9 _ -.
func validOrderNo(s string) bool {
	if s == "" || len(s) > 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}
