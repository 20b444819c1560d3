// Package pacing paces a fleet's calls to a provider per app, through
// Redis, so that every pod slows down together:
//
//   - A throttled answer pauses the app's calls for the whole fleet: 1 s
//     after the first, doubling with each further throttled answer up to
//     30 s, ended by the next answer that is not throttled. The pause is one
//     Redis hash per app (PauseKey), changed only by Lua scripts.
//   - When a pause runs out, one call fleet-wide gets the probe slot and
//     goes first; the others wait for its answer, as a circuit breaker's
//     half-open state does. Only the probe's answer ends or doubles the
//     pause, and answers to calls sent before the pause began do neither:
//     every Permit carries the pause generation it was given under. A probe
//     that gets no answer within the probe timeout (the call timeout, 10 s)
//     frees its slot for another.
//   - An optional rate cap (Config.Rate calls per second per app, the
//     fleet's FACESYNC_PROVIDER_RATE) is kept in Redis by
//     github.com/go-redis/redis_rate (GCRA in one Lua script), with a burst
//     of one second's calls: in any window of T seconds at most
//     Rate × (T + 1) calls start.
//
// The package knows nothing of asynq or of the provider's API: the caller
// asks for a Permit before each call and reports the answer with Done.
// Without a pause and without a rate cap, Acquire costs one Redis round
// trip and Done none. AcquireWith also looks at a caller's veto key (an
// order's purge marker) in that same round trip.
package pacing

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"
)

// Defaults of Config: the pauses facesync documents for partners.
const (
	DefaultFirstPause   = time.Second
	DefaultMaxPause     = 30 * time.Second
	DefaultProbeTimeout = 10 * time.Second
	DefaultPollInterval = 100 * time.Millisecond
)

// MaxRate bounds Config.Rate; the provider allows far fewer calls.
const MaxRate = 1_000_000

// stateTTL is how long an app's pause hash outlives its last change. It
// must outlast every call in flight (at most the evidence timeout), so
// that a stale answer never meets a generation counter that started again.
const stateTTL = 24 * time.Hour

// Config configures a Pacer. The zero value of a duration means its default.
type Config struct {
	// Rate is the fleet's cap on calls per second per app; 0: no cap.
	Rate int
	// FirstPause is the pause after a first throttled answer; each further
	// throttled answer of a probe doubles it, up to MaxPause.
	FirstPause, MaxPause time.Duration
	// ProbeTimeout is how long a probe holds its slot without an answer
	// before another call may take it: the provider call's timeout.
	ProbeTimeout time.Duration
	// PollInterval is how often a call waiting on a probe's answer looks
	// again.
	PollInterval time.Duration
	// Now is the clock of the pause; nil means the Redis server's clock,
	// one clock for the whole fleet.
	Now func() time.Time
	// PauseWaitFunc, when set, is told each time a call of the app has
	// waited on a pause (or on a probe's answer), for how long, including
	// a wait cut short by the call's context.
	PauseWaitFunc func(appID string, d time.Duration)
	// RateDelayFunc, when set, is told once for each call of the app that
	// the rate cap delayed.
	RateDelayFunc func(appID string)
}

// DefaultConfig returns the defaults: no rate cap, pauses of 1 s to 30 s,
// probes timing out after 10 s, the Redis server's clock.
func DefaultConfig() Config {
	return Config{
		FirstPause:   DefaultFirstPause,
		MaxPause:     DefaultMaxPause,
		ProbeTimeout: DefaultProbeTimeout,
		PollInterval: DefaultPollInterval,
	}
}

// withDefaults fills the zero durations with their defaults.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.FirstPause == 0 {
		c.FirstPause = d.FirstPause
	}
	if c.MaxPause == 0 {
		c.MaxPause = d.MaxPause
	}
	if c.ProbeTimeout == 0 {
		c.ProbeTimeout = d.ProbeTimeout
	}
	if c.PollInterval == 0 {
		c.PollInterval = d.PollInterval
	}
	return c
}

// Validate reports the first setting that is out of range, once the zero
// durations have their defaults.
func (c Config) Validate() error {
	c = c.withDefaults()
	switch {
	case c.Rate < 0 || c.Rate > MaxRate:
		return fmt.Errorf("pacing: rate %d is not a whole number of calls per second from 0 to %d", c.Rate, MaxRate)
	case c.FirstPause < time.Millisecond:
		return fmt.Errorf("pacing: first pause %v is shorter than 1ms", c.FirstPause)
	case c.MaxPause < c.FirstPause:
		return fmt.Errorf("pacing: longest pause %v is shorter than the first pause %v", c.MaxPause, c.FirstPause)
	case c.ProbeTimeout < time.Millisecond:
		return fmt.Errorf("pacing: probe timeout %v is shorter than 1ms", c.ProbeTimeout)
	case c.PollInterval < time.Millisecond:
		return fmt.Errorf("pacing: poll interval %v is shorter than 1ms", c.PollInterval)
	}
	return nil
}

// PauseKey is the Redis key of an app's fleet-wide pause.
func PauseKey(appID string) string { return "facesync:pause:" + appID }

// RateKey is the Redis key redis_rate keeps an app's rate cap in (it puts
// "rate:" before the key it is given).
func RateKey(appID string) string { return "rate:" + rateName(appID) }

// rateName is the key handed to redis_rate.
func rateName(appID string) string { return "facesync:" + appID }

// Errors a Permit wait ends with, under a *WaitError.
var (
	// ErrPaused means the app's calls are paused fleet-wide.
	ErrPaused = errors.New("provider calls of the app are paused fleet-wide")
	// ErrRateLimited means the app's calls are at the fleet's rate cap.
	ErrRateLimited = errors.New("provider calls of the app are at the fleet's rate cap")
	// ErrVetoed is AcquireWith's answer when its veto key exists: the
	// call must not be sent at all.
	ErrVetoed = errors.New("pacing: the call is vetoed")
)

// IsWait reports whether err is Acquire's *WaitError: the call waited on
// the fleet's pacing and was not sent, which is no failure of the task.
func IsWait(err error) bool {
	var we *WaitError
	return errors.As(err, &we)
}

// WaitError is returned by Acquire when the call's context would end, or
// ended, before the call could be sent: the caller should give the task
// back for a later retry, not count it as a failure. errors.Is matches
// ErrPaused or ErrRateLimited, and the context's error when it ended.
type WaitError struct {
	AppID string
	// Wait is how much longer the call would have had to wait at least.
	Wait time.Duration
	// Waited is how long the call did wait before giving up.
	Waited time.Duration
	Cause  error // ErrPaused or ErrRateLimited
	ctxErr error
}

func (e *WaitError) Error() string {
	s := fmt.Sprintf("app %s: %v (%v more)", e.AppID, e.Cause, e.Wait.Round(time.Millisecond))
	if e.ctxErr != nil {
		s += ": " + e.ctxErr.Error()
	}
	return s
}

// Unwrap returns the cause and, when the context ended, its error.
func (e *WaitError) Unwrap() []error {
	if e.ctxErr != nil {
		return []error{e.Cause, e.ctxErr}
	}
	return []error{e.Cause}
}

// Pacer paces the calls of every app through one Redis. It is safe for
// concurrent use; the pods of a fleet each have one, sharing the Redis.
type Pacer struct {
	rdb     redis.UniversalClient
	limiter *redis_rate.Limiter
	limit   redis_rate.Limit
	cfg     Config
	// args are the scripts' constant arguments, formatted once.
	probeMs, firstMs, maxMs, ttlMs string
}

// New returns a Pacer keeping its state in rdb, or an error when cfg is
// out of range.
func New(rdb redis.UniversalClient, cfg Config) (*Pacer, error) {
	if rdb == nil {
		return nil, errors.New("pacing: no Redis client")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	p := &Pacer{
		rdb:     rdb,
		cfg:     cfg,
		probeMs: ms(cfg.ProbeTimeout),
		firstMs: ms(cfg.FirstPause),
		maxMs:   ms(cfg.MaxPause),
		ttlMs:   ms(stateTTL),
	}
	if cfg.Rate > 0 {
		p.limiter = redis_rate.NewLimiter(rdb)
		p.limit = redis_rate.PerSecond(cfg.Rate) // burst: one second's calls
	}
	return p, nil
}

func ms(d time.Duration) string { return strconv.FormatInt(d.Milliseconds(), 10) }

// now returns the time argument of the scripts.
func (p *Pacer) now() int64 {
	if p.cfg.Now == nil {
		return -1
	}
	return p.cfg.Now().UnixMilli()
}

// Answer is what became of a call sent with a Permit.
type Answer int

// The answers Done accepts.
const (
	// Answered: the provider answered, and not that the app calls too
	// fast (any code, or an HTTP status other than 429).
	Answered Answer = iota + 1
	// Throttled: the provider said the app calls too fast (400504,
	// 400506, HTTP 429).
	Throttled
	// NoAnswer: no answer came (network error, time-out, the call was
	// never sent); a probe's slot is freed for another.
	NoAnswer
)

// Event is what a Done changed in the app's pause.
type Event string

// The events of Done.
const (
	Unchanged     Event = ""         // nothing: the answer was stale or changes nothing
	PauseStarted  Event = "started"  // a throttled answer started a pause
	PauseDoubled  Event = "doubled"  // the probe was throttled: the pause doubled, up to the longest
	PauseEnded    Event = "ended"    // the probe was answered: the pause is over
	ProbeReleased Event = "released" // the probe got no answer: another may take its slot
)

// Change is what Done did: the event and the length of the pause in force
// after it.
type Change struct {
	Event Event
	Pause time.Duration
}

// Permit is leave to send one call of an app. Report its answer with Done.
type Permit struct {
	p      *Pacer
	appID  string
	gen    int64
	probe  int64
	waited time.Duration
	rated  bool
	until  time.Time // AcquireOptions.MaxWait's end; zero: none
}

// Probe reports whether the call is the probe that ends or doubles a pause.
func (pm Permit) Probe() bool { return pm.probe != 0 }

// Waited returns how long Acquire waited on a pause or a probe.
func (pm Permit) Waited() time.Duration { return pm.waited }

// RateDelayed reports whether the rate cap delayed the call.
func (pm Permit) RateDelayed() bool { return pm.rated }

// Done reports the answer to the call. An answer to a call that was not
// the probe changes the pause only when it is throttled and no pause has
// begun since the call was sent; it costs no Redis round trip otherwise.
// Done is safe to call more than once: a repeated report is stale. It
// reports even when ctx has ended, within a short time of its own, so a
// probe's answer is not lost with its task.
func (pm Permit) Done(ctx context.Context, a Answer) (Change, error) {
	if a != Answered && a != Throttled && a != NoAnswer {
		return Change{}, fmt.Errorf("pacing: unknown answer %d", int(a))
	}
	if pm.p == nil {
		return Change{}, errors.New("pacing: Done on a Permit Acquire did not give")
	}
	if pm.probe == 0 && a != Throttled {
		return Change{}, nil
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	p := pm.p
	answer := 3 // the script's codes: 1 throttled, 2 answered, 3 no answer
	switch a {
	case Throttled:
		answer = 1
	case Answered:
		answer = 2
	}
	v, err := doneScript.Run(ctx, p.rdb, []string{PauseKey(pm.appID)},
		p.now(), pm.gen, pm.probe, answer, p.firstMs, p.maxMs, p.ttlMs).Int64Slice()
	if err != nil {
		return Change{}, fmt.Errorf("pacing: report answer of app %s: %w", pm.appID, err)
	}
	if len(v) != 2 {
		return Change{}, fmt.Errorf("pacing: report answer of app %s: unexpected reply %v", pm.appID, v)
	}
	var ev Event
	switch v[0] {
	case 1:
		ev = PauseStarted
	case 2:
		ev = PauseDoubled
	case 3:
		ev = PauseEnded
	case 4:
		ev = ProbeReleased
	}
	return Change{Event: ev, Pause: time.Duration(v[1]) * time.Millisecond}, nil
}

// The states of acquireScript.
const (
	stateOpen = iota
	statePaused
	stateProbing
	stateProbe
	stateVetoed
)

// Acquire returns leave to send one call of the app, waiting while the
// app is paused, while another call probes, and while the rate cap says
// so. When ctx would end before the wait does (by its deadline), or ends
// during it, Acquire returns a *WaitError at once: the caller should give
// the task back for a later retry. A Redis failure is returned as it is.
func (p *Pacer) Acquire(ctx context.Context, appID string) (Permit, error) {
	return p.AcquireWith(ctx, appID, AcquireOptions{})
}

// AcquireOptions are what a caller of AcquireWith may add to Acquire.
type AcquireOptions struct {
	// Veto is a Redis key whose existence forbids the call: AcquireWith
	// returns ErrVetoed, and no Permit, when it exists each time the pause
	// is looked at (before the first look, and after every wait). It costs
	// no extra round trip. Empty: none.
	Veto string
	// MaxWait bounds the waits as a deadline of ctx would, without the
	// cost of a context per call: a wait that would end later than
	// MaxWait after the call returns a *WaitError at once. 0: no bound
	// but ctx's.
	MaxWait time.Duration
}

// AcquireWith is Acquire with options.
func (p *Pacer) AcquireWith(ctx context.Context, appID string, o AcquireOptions) (Permit, error) {
	if err := validApp(appID); err != nil {
		return Permit{}, err
	}
	pm := Permit{p: p, appID: appID}
	if o.MaxWait > 0 {
		pm.until = time.Now().Add(o.MaxWait)
	}
	keys := []string{PauseKey(appID)}
	if o.Veto != "" {
		keys = append(keys, o.Veto)
	}
	for {
		v, err := acquireScript.Run(ctx, p.rdb, keys, p.now(), p.probeMs, p.ttlMs).Int64Slice()
		if err != nil {
			return Permit{}, fmt.Errorf("pacing: pause of app %s: %w", appID, err)
		}
		if len(v) != 4 {
			return Permit{}, fmt.Errorf("pacing: pause of app %s: unexpected reply %v", appID, v)
		}
		state, wait := v[0], time.Duration(v[2])*time.Millisecond
		switch state {
		case stateVetoed:
			return Permit{}, ErrVetoed
		case statePaused, stateProbing:
			if state == stateProbing {
				wait = min(wait, p.cfg.PollInterval)
			}
			// A little jitter, so the fleet's waiters do not all ask Redis
			// in the same millisecond.
			wait += rand.N(min(wait, p.cfg.PollInterval)/4 + 1)
			if err := p.sleep(ctx, &pm, wait, ErrPaused, true); err != nil {
				return Permit{}, err
			}
			continue
		}
		pm.gen, pm.probe = v[1], v[3]
		if p.limiter == nil {
			return pm, nil
		}
		ok, err := p.allow(ctx, &pm)
		if err != nil || ok {
			return pm, err
		}
		// A call delayed by the rate cap looks at the pause again: one may
		// have begun meanwhile. The probe keeps its slot and only waits
		// for the cap.
	}
}

// allow takes one call from the app's rate cap, waiting for it when the
// permit is the probe's. It reports false when the caller must look at the
// pause again first.
func (p *Pacer) allow(ctx context.Context, pm *Permit) (bool, error) {
	for {
		res, err := p.limiter.Allow(ctx, rateName(pm.appID), p.limit)
		if err != nil {
			p.release(ctx, *pm)
			return false, fmt.Errorf("pacing: rate cap of app %s: %w", pm.appID, err)
		}
		if res.Allowed > 0 {
			return true, nil
		}
		if !pm.rated {
			pm.rated = true
			if f := p.cfg.RateDelayFunc; f != nil {
				f(pm.appID)
			}
		}
		if err := p.sleep(ctx, pm, max(res.RetryAfter, time.Millisecond), ErrRateLimited, false); err != nil {
			p.release(ctx, *pm)
			return false, err
		}
		if pm.probe == 0 {
			return false, nil
		}
	}
}

// release frees a probe's slot when its call will not be sent.
func (p *Pacer) release(ctx context.Context, pm Permit) {
	if pm.probe != 0 {
		_, _ = pm.Done(ctx, NoAnswer) // the slot times out on its own otherwise
	}
}

// sleep waits d, or returns a *WaitError when ctx would end first or ends
// meanwhile. Pause waits are told to PauseWaitFunc and added to the permit.
func (p *Pacer) sleep(ctx context.Context, pm *Permit, d time.Duration, cause error, pause bool) error {
	dl, ok := ctx.Deadline()
	if !pm.until.IsZero() && (!ok || pm.until.Before(dl)) {
		dl, ok = pm.until, true
	}
	if ok && time.Until(dl) < d {
		return &WaitError{AppID: pm.appID, Wait: d, Waited: pm.waited, Cause: cause}
	}
	start := time.Now()
	t := time.NewTimer(d)
	var ctxErr error
	select {
	case <-t.C:
	case <-ctx.Done():
		t.Stop()
		ctxErr = ctx.Err()
	}
	slept := time.Since(start)
	if pause {
		pm.waited += slept
		if f := p.cfg.PauseWaitFunc; f != nil {
			f(pm.appID, slept)
		}
	}
	if ctxErr != nil {
		return &WaitError{AppID: pm.appID, Wait: max(d-slept, 0), Waited: pm.waited, Cause: cause, ctxErr: ctxErr}
	}
	return nil
}

// State is an app's pause as Redis holds it.
type State struct {
	Paused    bool          // a pause is in force (perhaps run out, waiting on a probe)
	Remaining time.Duration // until the pause runs out; 0 once it has
	Pause     time.Duration // the length of the pause in force
	Probing   bool          // a live probe holds the slot
	Gen       int64         // the pause generation
}

// State returns the app's pause, for tests, logs and operators.
func (p *Pacer) State(ctx context.Context, appID string) (State, error) {
	if err := validApp(appID); err != nil {
		return State{}, err
	}
	v, err := stateScript.Run(ctx, p.rdb, []string{PauseKey(appID)}, p.now()).Int64Slice()
	if err != nil {
		return State{}, fmt.Errorf("pacing: pause of app %s: %w", appID, err)
	}
	if len(v) != 4 {
		return State{}, fmt.Errorf("pacing: pause of app %s: unexpected reply %v", appID, v)
	}
	s := State{Gen: v[0], Paused: v[1] >= 0, Pause: time.Duration(v[2]) * time.Millisecond, Probing: v[3] == 1}
	if s.Paused {
		s.Remaining = time.Duration(v[1]) * time.Millisecond
	}
	return s, nil
}

// validApp checks an app id before a Redis key is built from it: 1 to 32
// characters of A-Z a-z 0-9 _ -, the only app ids there are.
func validApp(appID string) error {
	if appID == "" || len(appID) > 32 {
		return fmt.Errorf("pacing: app id %q is not 1 to 32 characters", appID)
	}
	for i := 0; i < len(appID); i++ {
		c := appID[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || c == '_' || c == '-') {
			return fmt.Errorf("pacing: app id %q has a character other than A-Z a-z 0-9 _ -", appID)
		}
	}
	return nil
}
