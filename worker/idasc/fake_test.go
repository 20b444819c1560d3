package idasc_test

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/facesync/facesync/worker/idasc"
	"github.com/facesync/facesync/worker/idasc/idasctest"
)

// fakeSetup is a Client against the fake provider, with a fresh ticket.
type fakeSetup struct {
	srv    *idasctest.Server
	client *idasc.Client
	ticket string
}

func newFakeSetup(t *testing.T, opts idasctest.Options, copts ...idasc.Option) fakeSetup {
	t.Helper()
	opts.Apps = map[string]string{testApp: testSecret}
	if opts.EvidenceDelay == 0 {
		opts.EvidenceDelay = -1 // evidence ready at once
	}
	srv := idasctest.NewServer(t, opts)
	c := idasc.New(srv.URL, copts...)
	ctx := context.Background()
	tok, err := c.AccessToken(ctx, testApp, testSecret)
	if err != nil {
		t.Fatalf("AccessToken() error = %v", err)
	}
	tick, err := c.SignTicket(ctx, testApp, tok.Value)
	if err != nil {
		t.Fatalf("SignTicket() error = %v", err)
	}
	return fakeSetup{srv: srv, client: c, ticket: tick.Value}
}

func (s fakeSetup) req(orderNo string) idasc.SyncRequest {
	return idasc.SyncRequest{AppID: testApp, OrderNo: orderNo, Ticket: s.ticket}
}

func TestFakeCredentials(t *testing.T) {
	t.Parallel()
	for _, opts := range []idasctest.Options{
		{},
		{ExpireInAsString: true, CodeAsNumber: true, TokenTTL: 20 * time.Minute, TicketTTL: 15 * time.Minute},
	} {
		srv := idasctest.NewServer(t, idasctest.Options{
			Apps: map[string]string{testApp: testSecret}, ExpireInAsString: opts.ExpireInAsString,
			CodeAsNumber: opts.CodeAsNumber, TokenTTL: opts.TokenTTL, TicketTTL: opts.TicketTTL,
		})
		c := idasc.New(srv.URL)
		ctx := context.Background()
		tok, err := c.AccessToken(ctx, testApp, testSecret)
		wantTok := cmp.Or(opts.TokenTTL, idasctest.DefaultTokenTTL)
		if err != nil || tok.Value == "" || tok.ExpiresIn != wantTok {
			t.Fatalf("AccessToken() = %+v, %v, want a token for %v", tok, err, wantTok)
		}
		tick, err := c.SignTicket(ctx, testApp, tok.Value)
		wantTick := cmp.Or(opts.TicketTTL, idasctest.DefaultTicketTTL)
		if err != nil || tick.Value == "" || tick.ExpiresIn != wantTick {
			t.Fatalf("SignTicket() = %+v, %v, want a ticket for %v", tick, err, wantTick)
		}
		if n := srv.TokenMints(testApp); n != 1 {
			t.Errorf("TokenMints() = %d, want 1", n)
		}
		_, err = c.AccessToken(ctx, testApp, "wrong"+testSecret)
		assertRedacted(t, "AccessToken()", err)
		if !idasc.IsRefused(err) {
			t.Errorf("AccessToken() with a wrong secret = %v, want class refused", err)
		}
	}
}

func TestFakeSync(t *testing.T) {
	t.Parallel()
	tests := []struct {
		orderNo   string
		wantClass []idasc.Class // one per successive call
		wantCode  string        // of the last call
	}{
		{orderNo: "plain", wantClass: []idasc.Class{idasc.ClassNone}, wantCode: "0"},
		{orderNo: "q-esc-num-rf", wantClass: []idasc.Class{idasc.ClassNone}, wantCode: "0"},
		{orderNo: "q-f66660015", wantClass: []idasc.Class{idasc.ClassFailed}, wantCode: "66660015"},
		{orderNo: "q-nr2", wantClass: []idasc.Class{idasc.ClassNotReady, idasc.ClassNotReady, idasc.ClassNone}, wantCode: "0"},
		{orderNo: "q-e500x1", wantClass: []idasc.Class{idasc.ClassTransient, idasc.ClassNone}, wantCode: "0"},
		{orderNo: "q-tr1", wantClass: []idasc.Class{idasc.ClassTransient, idasc.ClassNone}, wantCode: "0"},
		{orderNo: "q-h404", wantClass: []idasc.Class{idasc.ClassHTTP4xx}},
		{orderNo: "q-h429", wantClass: []idasc.Class{idasc.ClassThrottled}},
	}
	s := newFakeSetup(t, idasctest.Options{})
	for _, tt := range tests {
		t.Run(tt.orderNo, func(t *testing.T) {
			t.Parallel()
			var res *idasc.Result
			for i, want := range tt.wantClass {
				var err error
				res, err = s.client.Sync(context.Background(), s.req(tt.orderNo))
				if got := idasc.ClassOf(err); got != want {
					t.Fatalf("Sync(%q) call %d error = %v, class %v, want %v", tt.orderNo, i+1, err, got, want)
				}
			}
			if tt.wantCode == "" {
				return
			}
			if res == nil || res.Code != tt.wantCode || res.OrderNo != tt.orderNo || res.BizSeqNo == "" || res.Msg == "" {
				t.Errorf("Sync(%q) = %+v, want code %s for the order with bizSeqNo and msg", tt.orderNo, res, tt.wantCode)
			}
		})
	}
}

func TestFakeRejected(t *testing.T) {
	t.Parallel()
	s := newFakeSetup(t, idasctest.Options{})
	req := s.req("ord-rejected")
	req.Ticket = "not" + s.ticket
	res, err := s.client.Sync(context.Background(), req)
	if !idasc.IsRejected(err) || res == nil || res.Code != idasc.CodeRejected {
		t.Errorf("Sync() with a wrong ticket = %+v, %v, want code 400101, class rejected", res, err)
	}
	s.srv.KillCredentials(testApp)
	if _, err := s.client.Sync(context.Background(), s.req("ord-killed")); !idasc.IsRejected(err) {
		t.Errorf("Sync() with a dead ticket = %v, want class rejected", err)
	}
}

func TestFakeTimeout(t *testing.T) {
	t.Parallel()
	s := newFakeSetup(t, idasctest.Options{}, idasc.WithTimeout(50*time.Millisecond))
	_, err := s.client.Sync(context.Background(), s.req("q-lat10s"))
	if !idasc.IsTransient(err) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Sync() from a slow provider = %v, want a transient deadline error", err)
	}
}

func TestFakeGone(t *testing.T) {
	t.Parallel()
	s := newFakeSetup(t, idasctest.Options{})
	s.srv.Close()
	_, err := s.client.AccessToken(context.Background(), testApp, testSecret)
	assertRedacted(t, "AccessToken()", err)
	_, err = s.client.Sync(context.Background(), s.req("gone"))
	assertRedacted(t, "Sync()", err, s.ticket)
	if !idasc.IsTransient(err) {
		t.Errorf("Sync() from a closed provider = %v, want class transient", err)
	}
}

// hashingSink hashes what SyncEvidence streams, per kind, without keeping it.
type hashingSink struct {
	mu   sync.Mutex
	sums map[string]string
	size map[string]int64
}

func (h *hashingSink) fn(kind string, r io.Reader) error {
	sum := sha256.New()
	n, err := io.Copy(sum, r)
	if err != nil {
		return err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.sums == nil {
		h.sums, h.size = map[string]string{}, map[string]int64{}
	}
	h.sums[kind], h.size[kind] = hex.EncodeToString(sum.Sum(nil)), n
	return nil
}

func TestFakeSyncEvidence(t *testing.T) {
	t.Parallel()
	tests := []struct {
		orderNo   string
		getFile   string
		maxBytes  int64 // 4 MiB when zero
		wantClass idasc.Class
		wantKinds []string
	}{
		{orderNo: "ev-plain", getFile: "1", wantKinds: []string{idasc.KindPhoto, idasc.KindVideo}},
		{orderNo: "ev-esc-lb-png-v3m", getFile: "1", wantKinds: []string{idasc.KindPhoto, idasc.KindVideo}},
		{orderNo: "ev-photo", getFile: "2", wantKinds: []string{idasc.KindPhoto}},
		{orderNo: "ev-video-vbin", getFile: "3", wantKinds: []string{idasc.KindVideo}},
		{orderNo: "ev-f66660015", getFile: "1", wantClass: idasc.ClassFailed, wantKinds: []string{idasc.KindPhoto, idasc.KindVideo}},
		{orderNo: "ev-noev", getFile: "1"},
		{orderNo: "ev-bad64", getFile: "1", wantClass: idasc.ClassTransient},
		{orderNo: "ev-evtr1", getFile: "1", wantClass: idasc.ClassTransient},
		{orderNo: "ev-v2m", getFile: "3", maxBytes: 1 << 20, wantClass: idasc.ClassInvalid},
	}
	s := newFakeSetup(t, idasctest.Options{})
	for _, tt := range tests {
		t.Run(tt.orderNo, func(t *testing.T) {
			t.Parallel()
			var sink hashingSink
			res, err := s.client.SyncEvidence(context.Background(), s.req(tt.orderNo), tt.getFile, cmp.Or(tt.maxBytes, 4<<20), sink.fn)
			if got := idasc.ClassOf(err); got != tt.wantClass {
				t.Fatalf("SyncEvidence(%q) error = %v, class %v, want %v", tt.orderNo, err, got, tt.wantClass)
			}
			if tt.wantClass == idasc.ClassTransient || tt.wantClass == idasc.ClassInvalid {
				return
			}
			if res == nil || res.OrderNo != tt.orderNo {
				t.Errorf("SyncEvidence(%q) = %+v, want a Result for the order", tt.orderNo, res)
			}
			if len(sink.sums) != len(tt.wantKinds) {
				t.Errorf("SyncEvidence(%q) streamed %v, want %v", tt.orderNo, sink.size, tt.wantKinds)
			}
			for _, kind := range tt.wantKinds {
				_, size, sum := s.srv.Evidence(testApp, tt.orderNo, kind)
				if sink.size[kind] != size || sink.sums[kind] != sum {
					t.Errorf("SyncEvidence(%q) %s = %d bytes sha256 %s, want %d bytes sha256 %s",
						tt.orderNo, kind, sink.size[kind], sink.sums[kind], size, sum)
				}
			}
		})
	}
}
