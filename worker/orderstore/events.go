package orderstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Webhook events an order's transitions make due: the first final
// decision, and evidence reaching a final
// state.
const (
	EventDecision = "decision"
	EventEvidence = "evidence"
)

// EventsDueKey is the fleet-wide sorted set of events marked due whose
// delivery task is not known to be queued: member
// "{app_id}:{order_no}:{event}", score the Unix ms it became due. A member
// leaves it once its delivery task is confirmed queued (EventQueued) or
// the event is delivered, so it holds only the events between their
// transition and their enqueue: a crash in that gap leaves a member for
// the reconciler's sweep (DueOrders), never a lost event.
const EventsDueKey = "facesync:events_due"

// fieldEvent + event names the bookkeeping field of an event: the record
// JSON as it stood at the event while it is due, eventDelivered once it
// was delivered.
const fieldEvent = "event:"

// eventDelivered replaces a delivered event's record: small, and it keeps
// the field, so the event is never marked due again.
const eventDelivered = "delivered"

// eventMember is an event's member of EventsDueKey, and its delivery id.
func eventMember(appID, orderNo, event string) string {
	return appID + ":" + orderNo + ":" + event
}

// marksEvents reports whether appID's transitions mark events due.
func (s *Store) marksEvents(appID string) bool {
	return s.eventsFunc != nil && s.eventsFunc(appID)
}

// evidenceDueScript is casScript for the transition of evidence from
// pending to a final state, marking the evidence event due in the same
// step. The due set is the last KEYS entry.
//
// KEYS[1] -> facesync:decision:{app}:{order}
// KEYS[2] -> facesync:order:{app}:{order}
// KEYS[3] -> the purge marker
// KEYS[#KEYS] -> facesync:events_due
// ARGV[1] -> the record as read (evidence pending)
// ARGV[2] -> the new record (evidence final)
// ARGV[3] -> now, Unix ms (the due set's score)
// ARGV[4] -> the event's member of the due set
//
// Output: as casScript's.
var evidenceDueScript = redis.NewScript(purgedGuard + `
local p = purged(KEYS[3]) if p then return p end
local cur = redis.call('GET', KEYS[1])
if not cur then return {-1} end
if cur ~= ARGV[1] then return {0, cur} end
redis.call('SET', KEYS[1], ARGV[2], 'KEEPTTL')
if redis.call('HSETNX', KEYS[2], 'event:evidence', ARGV[2]) == 1 then
  redis.call('ZADD', KEYS[#KEYS], ARGV[3], ARGV[4])
  local r = redis.call('PTTL', KEYS[1])
  if r > 0 and redis.call('PTTL', KEYS[2]) == -1 then redis.call('PEXPIRE', KEYS[2], r) end
end
return {1}`)

// deliveredScript marks an event delivered and takes it off the due set.
//
// KEYS[1] -> facesync:order:{app}:{order}
// KEYS[2] -> facesync:events_due
// ARGV[1] -> field (event:decision or event:evidence)
// ARGV[2] -> the event's member of the due set
//
// Output: 1 when the event was due, 0 when its state is gone or it was
// delivered before.
var deliveredScript = redis.NewScript(`
redis.call('ZREM', KEYS[2], ARGV[2])
local v = redis.call('HGET', KEYS[1], ARGV[1])
if not v or v == 'delivered' then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], 'delivered')
return 1`)

// Events are an order's webhook events.
type Events struct {
	Due       map[string][]byte // due, by event: the record JSON as it stood at the event
	Delivered map[string]bool   // delivered, by event
}

// DueEvents reads the order's events: those due with the record each one
// carries, and those delivered. An order that never had an event (or
// whose state expired) has empty maps.
func (s *Store) DueEvents(ctx context.Context, appID, orderNo string) (Events, error) {
	ev := Events{Due: map[string][]byte{}, Delivered: map[string]bool{}}
	vals, err := s.rdb.HMGet(ctx, stateKey(appID, orderNo), fieldEvent+EventDecision, fieldEvent+EventEvidence).Result()
	if err != nil {
		return ev, fmt.Errorf("read order events: %w", err)
	}
	for i, name := range []string{EventDecision, EventEvidence} {
		v, ok := vals[i].(string)
		switch {
		case !ok:
		case v == eventDelivered:
			ev.Delivered[name] = true
		default:
			ev.Due[name] = []byte(v)
		}
	}
	return ev, nil
}

// MarkDelivered records that the order's event was delivered: it is done
// and never enqueued again. It reports whether the event was due.
func (s *Store) MarkDelivered(ctx context.Context, appID, orderNo, event string) (bool, error) {
	if event != EventDecision && event != EventEvidence {
		return false, fmt.Errorf("orderstore: unknown event %q", event)
	}
	n, err := deliveredScript.Run(ctx, s.rdb, []string{stateKey(appID, orderNo), EventsDueKey},
		fieldEvent+event, eventMember(appID, orderNo, event)).Int()
	if err != nil {
		return false, fmt.Errorf("mark event delivered: %w", err)
	}
	return n == 1, nil
}

// DueEvent is a member of the due set.
type DueEvent struct {
	AppID, OrderNo, Event string
	DueAt                 time.Time
}

// DueOrders lists up to limit events marked due at or before before whose
// delivery task is not confirmed queued, oldest first: what a crash
// between a transition and its enqueue left behind.
func (s *Store) DueOrders(ctx context.Context, before time.Time, limit int) ([]DueEvent, error) {
	zs, err := s.rdb.ZRangeByScoreWithScores(ctx, EventsDueKey, &redis.ZRangeBy{
		Min: "-inf", Max: strconv.FormatInt(before.UnixMilli(), 10), Count: int64(limit),
	}).Result()
	if err != nil {
		return nil, fmt.Errorf("read due events: %w", err)
	}
	out := make([]DueEvent, 0, len(zs))
	for _, z := range zs {
		m, _ := z.Member.(string)
		parts := strings.Split(m, ":")
		if len(parts) != 3 {
			// Not ours to keep: nothing could ever deliver it.
			s.rdb.ZRem(ctx, EventsDueKey, m)
			continue
		}
		out = append(out, DueEvent{AppID: parts[0], OrderNo: parts[1], Event: parts[2], DueAt: time.UnixMilli(int64(z.Score))})
	}
	return out, nil
}

// EventQueued takes an event off the due set once its delivery task is
// confirmed queued (or found queued already), or when there is nothing to
// deliver.
func (s *Store) EventQueued(ctx context.Context, appID, orderNo, event string) error {
	if err := s.rdb.ZRem(ctx, EventsDueKey, eventMember(appID, orderNo, event)).Err(); err != nil && !errors.Is(err, redis.Nil) {
		return fmt.Errorf("take event off the due set: %w", err)
	}
	return nil
}
