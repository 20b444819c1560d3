package pacing_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/facesync/facesync/ticketcache/ticketcachetest"
	"github.com/facesync/facesync/worker/pacing"
	"github.com/facesync/facesync/worker/workertest/testclock"
)

const app = "TIDA0001"

// fakePoll is the poll interval of the tests on an injected clock, which
// must never sleep through a wait on real time.
const fakePoll = time.Minute

// clock is the tests' manual clock.
type clock = testclock.Clock

func newClock() *clock { return testclock.New(time.Date(2026, 12, 1, 1, 2, 3, 0, time.UTC)) }

func newPacer(t testing.TB, rdb redis.UniversalClient, cfg pacing.Config) *pacing.Pacer {
	t.Helper()
	p, err := pacing.New(rdb, cfg)
	if err != nil {
		t.Fatalf("New() error = %v", err)
	}
	return p
}

func acquire(t *testing.T, p *pacing.Pacer) pacing.Permit {
	t.Helper()
	pm, err := p.Acquire(context.Background(), app)
	if err != nil {
		t.Fatalf("Acquire() error = %v", err)
	}
	return pm
}

// shortCtx is a context that ends before the pauses of these tests do
// (and before their poll interval, fakePoll).
func shortCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	t.Cleanup(cancel)
	return ctx
}

func done(t *testing.T, pm pacing.Permit, a pacing.Answer, want pacing.Event, wantPause time.Duration) {
	t.Helper()
	ch, err := pm.Done(context.Background(), a)
	if err != nil {
		t.Fatalf("Done(%d) error = %v", a, err)
	}
	if ch.Event != want || (want != pacing.Unchanged && ch.Pause != wantPause) {
		t.Fatalf("Done(%d) = %+v, want event %q, pause %v", a, ch, want, wantPause)
	}
}

func state(t *testing.T, p *pacing.Pacer) pacing.State {
	t.Helper()
	s, err := p.State(context.Background(), app)
	if err != nil {
		t.Fatalf("State() error = %v", err)
	}
	return s
}

// assertPaused checks that Acquire with a short context gives up at once
// with ErrPaused and at least the given wait left.
func assertPaused(t *testing.T, p *pacing.Pacer, atLeast time.Duration) {
	t.Helper()
	_, err := p.Acquire(shortCtx(t), app)
	var we *pacing.WaitError
	if !errors.As(err, &we) || !errors.Is(err, pacing.ErrPaused) || we.Wait < atLeast {
		t.Fatalf("Acquire() while paused = %v, want a WaitError for ErrPaused with at least %v left", err, atLeast)
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	if err := pacing.DefaultConfig().Validate(); err != nil {
		t.Errorf("DefaultConfig().Validate() = %v, want nil", err)
	}
	if err := (pacing.Config{}).Validate(); err != nil {
		t.Errorf("Config{}.Validate() = %v, want nil (zero durations are defaults)", err)
	}
	d := pacing.DefaultConfig()
	if d.Rate != 0 || d.FirstPause != time.Second || d.MaxPause != 30*time.Second || d.ProbeTimeout != 10*time.Second {
		t.Errorf("DefaultConfig() = %+v, want rate 0, pauses 1s to 30s, probe timeout 10s", d)
	}
	for _, c := range []pacing.Config{
		{Rate: -1},
		{Rate: pacing.MaxRate + 1},
		{FirstPause: -time.Second},
		{FirstPause: time.Microsecond},
		{FirstPause: 2 * time.Second, MaxPause: time.Second},
		{ProbeTimeout: -1},
		{PollInterval: -1},
	} {
		if err := c.Validate(); err == nil {
			t.Errorf("%+v.Validate() = nil, want an error", c)
		}
		if _, err := pacing.New(redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"}), c); err == nil {
			t.Errorf("New(%+v) error = nil, want one", c)
		}
	}
	if _, err := pacing.New(nil, pacing.Config{}); err == nil {
		t.Error("New(nil) error = nil, want one")
	}
}

func TestBadInput(t *testing.T) {
	t.Parallel()
	p := newPacer(t, ticketcachetest.NewDB(t).Client, pacing.Config{})
	for _, id := range []string{"", "a:b", "a b", "0123456789012345678901234567890123", "{x}"} {
		if _, err := p.Acquire(context.Background(), id); err == nil {
			t.Errorf("Acquire(%q) error = nil, want one", id)
		}
		if _, err := p.State(context.Background(), id); err == nil {
			t.Errorf("State(%q) error = nil, want one", id)
		}
	}
	pm := acquire(t, p)
	if _, err := pm.Done(context.Background(), pacing.Answer(0)); err == nil {
		t.Error("Done(0) error = nil, want one")
	}
	if _, err := (pacing.Permit{}).Done(context.Background(), pacing.Throttled); err == nil {
		t.Error("Done on a zero Permit error = nil, want one")
	}
}

func TestPauseDoublesCapsAndEnds(t *testing.T) {
	t.Parallel()
	db := ticketcachetest.NewDB(t)
	clk := newClock()
	p := newPacer(t, db.Client, pacing.Config{Now: clk.Now, PollInterval: fakePoll})

	if s := state(t, p); s.Paused {
		t.Fatalf("State() of a new app = %+v, want no pause", s)
	}
	stale := acquire(t, p) // sent before any pause
	first := acquire(t, p)
	if first.Probe() || first.Waited() != 0 {
		t.Fatalf("Acquire() without a pause = probe %v, waited %v; want a plain permit at once", first.Probe(), first.Waited())
	}
	// An answer that is not throttled changes nothing and costs nothing.
	done(t, first, pacing.Answered, pacing.Unchanged, 0)
	done(t, first, pacing.Throttled, pacing.PauseStarted, time.Second)
	if s := state(t, p); !s.Paused || s.Remaining != time.Second || s.Pause != time.Second || s.Probing {
		t.Fatalf("State() after a throttled answer = %+v, want a 1s pause", s)
	}
	// Answers to calls sent before the pause began neither double nor end it.
	done(t, stale, pacing.Throttled, pacing.Unchanged, 0)
	done(t, stale, pacing.Answered, pacing.Unchanged, 0)
	done(t, first, pacing.Throttled, pacing.Unchanged, 0) // a repeat is stale too
	assertPaused(t, p, 999*time.Millisecond)

	clk.Advance(400 * time.Millisecond)
	assertPaused(t, p, 599*time.Millisecond)
	clk.Advance(600 * time.Millisecond)

	// Each throttled probe doubles the pause, up to 30 s.
	for _, want := range []time.Duration{2, 4, 8, 16, 30, 30} {
		want *= time.Second
		probe := acquire(t, p)
		if !probe.Probe() {
			t.Fatalf("Acquire() after the pause ran out is not the probe")
		}
		assertPaused(t, p, 0) // the others wait for the probe's answer
		if s := state(t, p); !s.Probing || s.Remaining != 0 {
			t.Fatalf("State() while probing = %+v, want probing, nothing remaining", s)
		}
		done(t, stale, pacing.Answered, pacing.Unchanged, 0)
		done(t, probe, pacing.Throttled, pacing.PauseDoubled, want)
		if s := state(t, p); s.Remaining != want || s.Pause != want {
			t.Fatalf("State() after a throttled probe = %+v, want %v", s, want)
		}
		assertPaused(t, p, want-time.Millisecond)
		clk.Advance(want)
	}
	probe := acquire(t, p)
	done(t, probe, pacing.Answered, pacing.PauseEnded, 0)
	if s := state(t, p); s.Paused || s.Probing {
		t.Fatalf("State() after the probe was answered = %+v, want no pause", s)
	}
	after := acquire(t, p)
	if after.Probe() {
		t.Fatal("Acquire() after the pause ended is a probe")
	}
	// A late throttled answer to a call sent before the pause starts nothing.
	done(t, stale, pacing.Throttled, pacing.Unchanged, 0)
	done(t, probe, pacing.Throttled, pacing.Unchanged, 0)
	if s := state(t, p); s.Paused {
		t.Fatalf("State() after stale throttled answers = %+v, want no pause", s)
	}
	// The next throttled answer starts again from the first pause.
	done(t, after, pacing.Throttled, pacing.PauseStarted, time.Second)
}

func TestProbeTimeoutFreesSlot(t *testing.T) {
	t.Parallel()
	db := ticketcachetest.NewDB(t)
	clk := newClock()
	p := newPacer(t, db.Client, pacing.Config{Now: clk.Now, PollInterval: fakePoll})
	other := newPacer(t, db.Client, pacing.Config{Now: clk.Now, PollInterval: fakePoll}) // another pod

	done(t, acquire(t, p), pacing.Throttled, pacing.PauseStarted, time.Second)
	clk.Advance(time.Second)
	lost := acquire(t, p)
	if !lost.Probe() {
		t.Fatal("first Acquire() after the pause is not the probe")
	}
	clk.Advance(9 * time.Second)
	assertPaused(t, other, 999*time.Millisecond) // the slot is freed in 1 s
	clk.Advance(time.Second)
	second := acquire(t, other)
	if !second.Probe() {
		t.Fatal("Acquire() once the probe timed out is not the new probe")
	}
	// The timed-out probe's answer comes too late to count.
	done(t, lost, pacing.Answered, pacing.Unchanged, 0)
	done(t, lost, pacing.Throttled, pacing.Unchanged, 0)
	if s := state(t, p); !s.Paused || !s.Probing {
		t.Fatalf("State() after the lost probe's answer = %+v, want still paused, probing", s)
	}
	// A probe that got no answer frees its slot at once.
	done(t, second, pacing.NoAnswer, pacing.ProbeReleased, time.Second)
	third := acquire(t, p)
	if !third.Probe() {
		t.Fatal("Acquire() after a released probe is not the new probe")
	}
	done(t, second, pacing.Answered, pacing.Unchanged, 0)
	done(t, third, pacing.Throttled, pacing.PauseDoubled, 2*time.Second)
}

// TestHalfOpenAcrossPods has 3 pacers (pods) of 20 goroutines each wait on
// a pause: each time it runs out exactly one call is the probe, and no
// other call is let through before the probe is answered.
func TestHalfOpenAcrossPods(t *testing.T) {
	t.Parallel()
	db := ticketcachetest.NewDB(t)
	cfg := pacing.Config{FirstPause: 100 * time.Millisecond, PollInterval: 5 * time.Millisecond}
	var waitedNs atomic.Int64
	cfg.PauseWaitFunc = func(appID string, d time.Duration) {
		if appID == app {
			waitedNs.Add(int64(d))
		}
	}
	pods := []*pacing.Pacer{newPacer(t, db.Client, cfg), newPacer(t, db.Client, cfg), newPacer(t, db.Client, cfg)}
	if _, err := (acquireOrFail(t, pods[0])).Done(context.Background(), pacing.Throttled); err != nil {
		t.Fatal(err)
	}

	var (
		probes   atomic.Int32
		answered atomic.Bool // set just before the last probe reports
		early    atomic.Int32
		wg       sync.WaitGroup
	)
	errs := make(chan error, 60)
	for _, p := range pods {
		for range 20 {
			wg.Go(func() {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				pm, err := p.Acquire(ctx, app)
				if err != nil {
					errs <- err
					return
				}
				if !pm.Probe() {
					if !answered.Load() {
						early.Add(1)
					}
					return
				}
				// The first probe is throttled (the pause doubles), the
				// second is answered (the pause ends).
				time.Sleep(50 * time.Millisecond)
				a := pacing.Throttled
				if probes.Add(1) == 2 {
					a = pacing.Answered
					answered.Store(true)
				}
				if _, err := pm.Done(context.Background(), a); err != nil {
					errs <- err
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("Acquire or Done error = %v", err)
	}
	if n := probes.Load(); n != 2 {
		t.Errorf("probes = %d, want 2 (one per run-out pause)", n)
	}
	if n := early.Load(); n != 0 {
		t.Errorf("%d calls were let through before the probe was answered, want 0", n)
	}
	if waitedNs.Load() == 0 {
		t.Error("PauseWaitFunc was told of no wait")
	}
}

func acquireOrFail(t *testing.T, p *pacing.Pacer) pacing.Permit {
	t.Helper()
	pm, err := p.Acquire(context.Background(), app)
	if err != nil {
		t.Fatalf("Acquire() error = %v", err)
	}
	return pm
}

// TestWaitBoundedByContext checks that a wait the context cannot afford
// returns at once, and that one cut short by the context says so.
func TestWaitBoundedByContext(t *testing.T) {
	t.Parallel()
	db := ticketcachetest.NewDB(t)
	p := newPacer(t, db.Client, pacing.Config{FirstPause: time.Minute, MaxPause: time.Minute})
	done(t, acquire(t, p), pacing.Throttled, pacing.PauseStarted, time.Minute)

	start := time.Now()
	_, err := p.Acquire(shortCtx(t), app)
	if !errors.Is(err, pacing.ErrPaused) || errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Acquire() with a deadline before the pause ends = %v, want ErrPaused at once", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("Acquire() took %v to give up, want at once", d)
	}
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(20*time.Millisecond, cancel)
	_, err = p.Acquire(ctx, app)
	var we *pacing.WaitError
	if !errors.As(err, &we) || !errors.Is(err, pacing.ErrPaused) || !errors.Is(err, context.Canceled) || we.Waited <= 0 || !pacing.IsWait(err) {
		t.Errorf("Acquire() cancelled while waiting = %v, want a WaitError for ErrPaused and context.Canceled with time waited", err)
	}
}

// TestRedisDown checks that a Redis failure is an error, not a permit.
func TestRedisDown(t *testing.T) {
	t.Parallel()
	srv := ticketcachetest.StartServer(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr, MaxRetries: -1})
	t.Cleanup(func() { _ = rdb.Close() })
	p := newPacer(t, rdb, pacing.Config{Rate: 5})
	srv.Kill()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := p.Acquire(ctx, app); err == nil || pacing.IsWait(err) {
		t.Errorf("Acquire() with Redis down = %v, want a Redis error", err)
	}
}

// TestVeto: AcquireWith refuses a call while its veto key exists, when
// there is no pause and when a pause has run out (without taking the probe
// slot), and while a call waits on a pause that the key appears during;
// without the key it is Acquire.
func TestVeto(t *testing.T) {
	t.Parallel()
	db := ticketcachetest.NewDB(t)
	clk := newClock()
	p := newPacer(t, db.Client, pacing.Config{Now: clk.Now, PollInterval: fakePoll})
	ctx := context.Background()
	const veto = "test:veto"

	pm, err := p.AcquireWith(ctx, app, pacing.AcquireOptions{Veto: veto})
	if err != nil || pm.Probe() {
		t.Fatalf("AcquireWith() without the key = %v, probe %v; want a plain permit", err, pm.Probe())
	}
	db.Client.Set(ctx, veto, "1", 0)
	if _, err := p.AcquireWith(ctx, app, pacing.AcquireOptions{Veto: veto}); !errors.Is(err, pacing.ErrVetoed) {
		t.Fatalf("AcquireWith() with the key = %v, want ErrVetoed", err)
	}
	if _, err := p.AcquireWith(ctx, app, pacing.AcquireOptions{}); err != nil {
		t.Fatalf("AcquireWith() without a veto = %v, want a permit", err)
	}

	done(t, pm, pacing.Throttled, pacing.PauseStarted, time.Second)
	clk.Advance(time.Second) // the pause ran out: the next call would be the probe
	if _, err := p.AcquireWith(ctx, app, pacing.AcquireOptions{Veto: veto}); !errors.Is(err, pacing.ErrVetoed) {
		t.Fatalf("AcquireWith() with the key after the pause = %v, want ErrVetoed", err)
	}
	if s := state(t, p); s.Probing {
		t.Fatalf("State() after a vetoed call = %+v: the vetoed call took the probe slot", s)
	}
	probe := acquire(t, p)
	if !probe.Probe() {
		t.Fatal("Acquire() after a vetoed call is not the probe")
	}

	// A call waiting on a pause is vetoed when it looks again: the key
	// appears during its wait.
	const app2 = "TIDA0002"
	db.Client.Del(ctx, veto)
	waiting := newPacer(t, db.Client, pacing.Config{FirstPause: 20 * time.Millisecond, PollInterval: 5 * time.Millisecond,
		PauseWaitFunc: func(string, time.Duration) { db.Client.Set(ctx, veto, "1", 0) }})
	first, err := waiting.Acquire(ctx, app2)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := first.Done(ctx, pacing.Throttled); err != nil {
		t.Fatal(err)
	}
	if _, err := waiting.AcquireWith(ctx, app2, pacing.AcquireOptions{Veto: veto}); !errors.Is(err, pacing.ErrVetoed) {
		t.Fatalf("AcquireWith() when the key appeared during its wait = %v, want ErrVetoed", err)
	}
}

// TestMaxWait: AcquireWith gives up at once, with a *WaitError, on a pause
// longer than its MaxWait, and waits out one that is shorter.
func TestMaxWait(t *testing.T) {
	t.Parallel()
	db := ticketcachetest.NewDB(t)
	ctx := context.Background()
	p := newPacer(t, db.Client, pacing.Config{FirstPause: 300 * time.Millisecond, PollInterval: 5 * time.Millisecond})
	pm, err := p.Acquire(ctx, app)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pm.Done(ctx, pacing.Throttled); err != nil {
		t.Fatal(err)
	}
	_, err = p.AcquireWith(ctx, app, pacing.AcquireOptions{MaxWait: 100 * time.Millisecond})
	var we *pacing.WaitError
	if !errors.As(err, &we) || !errors.Is(err, pacing.ErrPaused) || we.Wait < 100*time.Millisecond {
		t.Fatalf("AcquireWith(MaxWait 100ms) on a 300ms pause = %v, want a WaitError for ErrPaused", err)
	}
	if we.Waited != 0 {
		t.Errorf("AcquireWith(MaxWait 100ms) on a 300ms pause waited %v instead of giving up at once", we.Waited)
	}
	probe, err := p.AcquireWith(ctx, app, pacing.AcquireOptions{MaxWait: 10 * time.Second})
	if err != nil || !probe.Probe() || probe.Waited() == 0 {
		t.Fatalf("AcquireWith(MaxWait 10s) on a 300ms pause = %v, probe %v, waited %v; want the probe after a wait", err, probe.Probe(), probe.Waited())
	}
}
