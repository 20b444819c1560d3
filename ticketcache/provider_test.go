package ticketcache_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/facesync/facesync/ticketcache"
	"github.com/facesync/facesync/worker/workertest/testclock"
)

// epoch is where every fake clock starts.
var epoch = time.Date(2026, 11, 28, 1, 0, 0, 0, time.UTC)

// fakeClock is the tests' manual clock.
type fakeClock = testclock.Clock

func newFakeClock() *fakeClock { return testclock.New(epoch) }

// providerOverlap is how long the model keeps a token alive after a newer
// one was minted, as the real provider does.
const providerOverlap = time.Minute

// provider models the provider's token rules: every token mint kills the
// previous token, and every ticket made from it, providerOverlap later;
// tokens and tickets also die at the end of their lifetime. Its hooks run
// before a mint and may block or fail the call (n counts calls from 1).
type provider struct {
	clock      *fakeClock
	tokenLife  time.Duration
	ticketLife time.Duration
	latency    time.Duration

	mu          sync.Mutex
	tokenHook   func(ctx context.Context, n int) error
	ticketHook  func(ctx context.Context, n int) error
	tokenCalls  int
	ticketCalls int
	tokens      []mint            // in mint order, which is time order
	tickets     map[string]ticket // by value
}

type mint struct {
	value string
	at    time.Time
}

type ticket struct {
	token int // index into tokens
	at    time.Time
	life  time.Duration
}

func newProvider(clock *fakeClock) *provider {
	return &provider{clock: clock, tokenLife: 7200 * time.Second, ticketLife: 3600 * time.Second, tickets: map[string]ticket{}}
}

func (p *provider) setTokenHook(h func(ctx context.Context, n int) error) {
	p.mu.Lock()
	p.tokenHook = h
	p.mu.Unlock()
}

func (p *provider) setTicketHook(h func(ctx context.Context, n int) error) {
	p.mu.Lock()
	p.ticketHook = h
	p.mu.Unlock()
}

func (p *provider) pause(ctx context.Context) error {
	if p.latency <= 0 {
		return nil
	}
	t := time.NewTimer(p.latency)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// FetchToken is a ticketcache.FetchTokenFunc.
func (p *provider) FetchToken(ctx context.Context, appID string) (ticketcache.Credential, error) {
	p.mu.Lock()
	p.tokenCalls++
	n, hook := p.tokenCalls, p.tokenHook
	p.mu.Unlock()
	if hook != nil {
		if err := hook(ctx, n); err != nil {
			return ticketcache.Credential{}, err
		}
	}
	if err := p.pause(ctx); err != nil {
		return ticketcache.Credential{}, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	v := fmt.Sprintf("TOKEN-%s-%d-%s", appID, len(p.tokens)+1, rand.Text())
	p.tokens = append(p.tokens, mint{value: v, at: p.clock.Now()})
	return ticketcache.Credential{Value: v, ExpiresIn: p.tokenLife}, nil
}

// FetchTicket is a ticketcache.FetchTicketFunc; it refuses dead or unknown
// tokens as the provider does.
func (p *provider) FetchTicket(ctx context.Context, appID, token string) (ticketcache.Credential, error) {
	p.mu.Lock()
	p.ticketCalls++
	n, hook := p.ticketCalls, p.ticketHook
	p.mu.Unlock()
	if hook != nil {
		if err := hook(ctx, n); err != nil {
			return ticketcache.Credential{}, err
		}
	}
	if err := p.pause(ctx); err != nil {
		return ticketcache.Credential{}, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.clock.Now()
	i := p.tokenIndex(token)
	if i < 0 || p.tokenDead(i, now) {
		return ticketcache.Credential{}, errors.New("provider: access token invalid")
	}
	v := fmt.Sprintf("TICKET-%s-%d-%s", appID, len(p.tickets)+1, rand.Text())
	p.tickets[v] = ticket{token: i, at: now, life: p.ticketLife}
	return ticketcache.Credential{Value: v, ExpiresIn: p.ticketLife}, nil
}

func (p *provider) tokenIndex(v string) int {
	for i, m := range p.tokens {
		if m.value == v {
			return i
		}
	}
	return -1
}

func (p *provider) tokenDead(i int, now time.Time) bool {
	if !now.Before(p.tokens[i].at.Add(p.tokenLife)) {
		return true
	}
	return i+1 < len(p.tokens) && !now.Before(p.tokens[i+1].at.Add(providerOverlap))
}

// Dead reports whether the provider would refuse a request signed with the
// ticket at now.
func (p *provider) Dead(value string, now time.Time) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	tk, ok := p.tickets[value]
	if !ok || !now.Before(tk.at.Add(tk.life)) {
		return true
	}
	return p.tokenDead(tk.token, now)
}

// ticketToken returns the token a ticket was made with ("" if unknown).
func (p *provider) ticketToken(value string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	tk, ok := p.tickets[value]
	if !ok {
		return ""
	}
	return p.tokens[tk.token].value
}

// counts returns the tokens and tickets minted and the calls made.
func (p *provider) counts() (tokens, tickets, tokenCalls, ticketCalls int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.tokens), len(p.tickets), p.tokenCalls, p.ticketCalls
}

// lastToken returns the newest token's value.
func (p *provider) lastToken() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.tokens) == 0 {
		return ""
	}
	return p.tokens[len(p.tokens)-1].value
}

// secrets returns every token and ticket value minted so far.
func (p *provider) secrets() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var s []string
	for _, m := range p.tokens {
		s = append(s, m.value)
	}
	for v := range p.tickets {
		s = append(s, v)
	}
	return s
}

// eventually waits, within a bound, for cond; the bound only keeps a broken
// test from hanging.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}
