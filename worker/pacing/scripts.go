package pacing

import "github.com/redis/go-redis/v9"

// The pause of an app is one Redis hash, PauseKey(appID):
//
//	gen          the pause generation: +1 when a pause starts or doubles
//	until        when the pause ends, in ms since the epoch; 0: no pause
//	pause        the length of the current pause in ms
//	probe        id of the call that holds the probe slot; 0: none
//	probe_until  when that probe's slot is freed for another, in ms
//	probes       the last probe id given out
//
// Every script takes the time as its first argument, in ms since the
// epoch, or -1 for the Redis server's own clock (one clock for the whole
// fleet, as redis_rate uses).

// nowLua sets now from ARGV[1], or from the server's clock when it is
// negative.
const nowLua = `
local now = tonumber(ARGV[1])
if now < 0 then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
`

// acquireScript looks at the app's pause for a call about to be sent, and
// gives the probe slot to this call when the pause has run out and no
// live probe holds it. It writes nothing unless it gives out the slot.
//
// KEYS[1] -> PauseKey(appID)
// KEYS[2] -> optional: a key whose existence vetoes the call
// ARGV[1] -> now in ms, or -1
// ARGV[2] -> probe timeout in ms
// ARGV[3] -> TTL of the hash in ms
//
// Output: {state, gen, wait_ms, probe_id}, state 0: no pause, send;
// 1: paused, wait wait_ms; 2: a probe is out, wait for its answer (its
// slot is freed in wait_ms); 3: this call is the probe, send; 4: KEYS[2]
// exists, do not send (looked at first, so a vetoed call never takes the
// probe slot).
//
// The clock is read only once a pause is found: an app without one, the
// common case, costs Redis one HMGET (and the EXISTS of a veto).
var acquireScript = redis.NewScript(`
if KEYS[2] and redis.call('EXISTS', KEYS[2]) == 1 then
  return {4, 0, 0, 0}
end
local h = redis.call('HMGET', KEYS[1], 'gen', 'until', 'probe', 'probe_until', 'probes')
local gen = tonumber(h[1]) or 0
local untl = tonumber(h[2]) or 0
if untl == 0 then
  return {0, gen, 0, 0}
end
` + nowLua + `
if now < untl then
  return {1, gen, untl - now, 0}
end
local probe = tonumber(h[3]) or 0
local probe_until = tonumber(h[4]) or 0
if probe ~= 0 and now < probe_until then
  return {2, gen, probe_until - now, 0}
end
local id = (tonumber(h[5]) or 0) + 1
redis.call('HSET', KEYS[1], 'probe', id, 'probe_until', now + tonumber(ARGV[2]), 'probes', id)
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return {3, gen, 0, id}
`)

// doneScript reports the answer to a call sent with a permit of
// generation gen (and probe id, 0 for a call that was not the probe).
//
// KEYS[1] -> PauseKey(appID)
// ARGV[1] -> now in ms, or -1
// ARGV[2] -> the permit's gen
// ARGV[3] -> the permit's probe id, or 0
// ARGV[4] -> the answer: 1 throttled, 2 answered and not throttled, 3 no answer
// ARGV[5] -> first pause in ms
// ARGV[6] -> longest pause in ms
// ARGV[7] -> TTL of the hash in ms
//
// Output: {event, pause_ms}, event 0: nothing changed (a stale answer, or
// one that changes nothing); 1: a pause started; 2: the pause doubled
// (up to the longest); 3: the pause ended; 4: the probe's slot was freed.
var doneScript = redis.NewScript(nowLua + `
local gen = tonumber(ARGV[2])
local probe = tonumber(ARGV[3])
local answer = tonumber(ARGV[4])
local h = redis.call('HMGET', KEYS[1], 'gen', 'until', 'pause', 'probe')
local cur = tonumber(h[1]) or 0
local untl = tonumber(h[2]) or 0
local pause = tonumber(h[3]) or 0
local holder = tonumber(h[4]) or 0
if gen ~= cur then
  return {0, pause}
end
if untl == 0 then
  if answer ~= 1 or probe ~= 0 then
    return {0, 0}
  end
  local first = tonumber(ARGV[5])
  redis.call('HSET', KEYS[1], 'gen', cur + 1, 'until', now + first, 'pause', first, 'probe', 0, 'probe_until', 0)
  redis.call('PEXPIRE', KEYS[1], ARGV[7])
  return {1, first}
end
if probe == 0 or probe ~= holder then
  return {0, pause}
end
if answer == 1 then
  local nxt = math.min(pause * 2, tonumber(ARGV[6]))
  redis.call('HSET', KEYS[1], 'gen', cur + 1, 'until', now + nxt, 'pause', nxt, 'probe', 0, 'probe_until', 0)
  redis.call('PEXPIRE', KEYS[1], ARGV[7])
  return {2, nxt}
end
if answer == 2 then
  redis.call('HSET', KEYS[1], 'until', 0, 'pause', 0, 'probe', 0, 'probe_until', 0)
  redis.call('PEXPIRE', KEYS[1], ARGV[7])
  return {3, 0}
end
redis.call('HSET', KEYS[1], 'probe', 0, 'probe_until', 0)
return {4, pause}
`)

// stateScript reads the app's pause without changing it.
//
// KEYS[1] -> PauseKey(appID)
// ARGV[1] -> now in ms, or -1
//
// Output: {gen, remaining_ms, pause_ms, probing}, remaining_ms -1 when
// there is no pause; probing 1 while a live probe holds the slot.
var stateScript = redis.NewScript(nowLua + `
local h = redis.call('HMGET', KEYS[1], 'gen', 'until', 'pause', 'probe', 'probe_until')
local gen = tonumber(h[1]) or 0
local untl = tonumber(h[2]) or 0
if untl == 0 then
  return {gen, -1, 0, 0}
end
local probing = 0
if (tonumber(h[4]) or 0) ~= 0 and now < (tonumber(h[5]) or 0) then
  probing = 1
end
return {gen, math.max(untl - now, 0), tonumber(h[3]) or 0, probing}
`)
