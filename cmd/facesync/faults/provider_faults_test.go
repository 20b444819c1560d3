package faults

import (
	"fmt"
	"testing"
	"time"

	"github.com/facesync/facesync/worker/idasc/idasctest"
	"github.com/facesync/facesync/worker/orderstore"
)

// faultOnce gives an order a faulty scenario until the provider has
// answered one request that matches hit, then the plain one. It returns a
// channel closed once the fault was served.
func (s *stack) faultOnce(orderNo string, fault idasctest.Scenario, hit func(idasctest.Request) bool) <-chan struct{} {
	s.prov.SetScenario(s.app, orderNo, fault)
	served := make(chan struct{})
	ctx := s.t.Context()
	go func() {
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			for _, r := range s.prov.Requests() {
				if r.AppID == s.app && r.OrderNo == orderNo && hit(r) {
					s.prov.SetScenario(s.app, orderNo, idasctest.Scenario{})
					close(served)
					return
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	return served
}

// TestProviderFaults mixes every kind of provider fault into one run of two
// workers: HTTP 500s on decisions and on evidence, answers cut short,
// 66660011 first, JSON quirks, a decision call that times out, invalid
// base64 in a video, HTTP 404, definitive failures, and a storm of 400101
// after every ticket of the app is killed mid-run. Every order ends as its
// scenario says, and the storm costs exactly one new token and ticket.
func TestProviderFaults(t *testing.T) {
	t.Parallel()
	s := newStack(t, "TIDAPROV")
	passed := func(orderNo string) order {
		return order{orderNo: orderNo, status: orderstore.StatusPassed, evidence: orderstore.EvidenceStored}
	}
	var orders []order
	for i := range 3 {
		for _, tokens := range []string{"e500x2", "tr2", "ev500x2", "evtr1", "nr2", "esc-lb", "num-rf"} {
			orders = append(orders, passed(fmt.Sprintf("pf%d-%s", i, tokens)))
		}
		orders = append(orders,
			order{orderNo: fmt.Sprintf("pf%d-f66660015", i), status: orderstore.StatusFailed, code: "66660015", evidence: orderstore.EvidenceStored},
			order{orderNo: fmt.Sprintf("pf%d-h404", i), status: orderstore.StatusError, code: orderstore.CodeProviderHTTP4xx, evidence: orderstore.EvidenceSkipped},
		)
	}
	// Faults that would last forever if the fake kept them: served once.
	bad64, timeout := passed("pf-badb64"), passed("pf-timeout")
	badServed := s.faultOnce(bad64.orderNo, idasctest.Scenario{InvalidBase64: true},
		func(r idasctest.Request) bool { return r.GetFile != "" && r.Video })
	// Beyond the provider client's 10 s timeout for a decision call.
	timeoutServed := s.faultOnce(timeout.orderNo, idasctest.Scenario{Latency: 15 * time.Second},
		func(r idasctest.Request) bool { return r.GetFile == "" && r.HTTPStatus == 0 })
	orders = append(orders, bad64, timeout)
	storm := passing("pf-storm", 40)

	s.startWorker()
	s.startWorker()
	for _, o := range orders {
		s.enqueue(o)
	}
	eventually(t, time.Minute, "first orders decided", func() bool { return s.decided(orders) >= len(orders)/2 })
	if n := s.prov.TokenMints(s.app); n != 1 {
		t.Fatalf("token mints before the rotation = %d, want 1", n)
	}
	s.prov.KillCredentials(s.app)
	for _, o := range storm {
		s.enqueue(o)
	}
	s.check(append(orders, storm...), 2*time.Minute)

	for what, served := range map[string]<-chan struct{}{"invalid base64": badServed, "a timeout": timeoutServed} {
		select {
		case <-served:
		default:
			t.Errorf("the provider never served %s", what)
		}
	}
	if n := s.prov.RejectedWithDeadTicket(s.app); n == 0 {
		t.Errorf("requests refused with the killed ticket = 0, want a storm of them")
	}
	if tok, tic := s.prov.TokenMints(s.app), s.prov.TicketMints(s.app); tok != 2 || tic != 2 {
		t.Errorf("token, ticket mints = %d, %d, want 2, 2 (one refresh for the whole storm)", tok, tic)
	}
}
