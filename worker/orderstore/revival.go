package orderstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// JournalKey is the sorted set of revivals noted but not yet known to have
// re-enqueued their task: member "{phase}:{app_id}:{order_no}", score the
// Unix ms of the note. app_id and order_no never hold ':', so a member
// splits back without ambiguity.
const JournalKey = "facesync:reconcile:journal"

// Fields of the bookkeeping hash kept by revivals.
const (
	fieldRevivals = "rev:"    // + phase: how many times the fleet revived the phase's archived task
	fieldRevive   = "revive:" // + phase: the payload of a revival under way
)

// noteRevivalScript counts a revival and journals it until its task is
// enqueued again.
//
// KEYS[1] -> facesync:decision:{app}:{order}
// KEYS[2] -> facesync:order:{app}:{order}
// KEYS[3] -> facesync:reconcile:journal
// ARGV[1] -> phase (decision or evidence)
// ARGV[2] -> task payload
// ARGV[3] -> journal member
// ARGV[4] -> now, Unix ms
// ARGV[5] -> TTL in ms
//
// Output: the phase's revival count after this one.
var noteRevivalScript = redis.NewScript(keepTTL + `
local n = redis.call('HINCRBY', KEYS[2], 'rev:' .. ARGV[1], 1)
redis.call('HSET', KEYS[2], 'revive:' .. ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[3])
keep(ARGV[5])
return n`)

// doneRevivalScript clears a journalled revival once its task is back.
//
// KEYS[1] -> facesync:order:{app}:{order}
// KEYS[2] -> facesync:reconcile:journal
// ARGV[1] -> phase
// ARGV[2] -> journal member
//
// Output: 1.
var doneRevivalScript = redis.NewScript(`
redis.call('HDEL', KEYS[1], 'revive:' .. ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[2])
return 1`)

func journalMember(phase, appID, orderNo string) string {
	return phase + ":" + appID + ":" + orderNo
}

// NoteRevival notes that the fleet is about to run the order's archived
// task of phase (PhaseDecision or PhaseEvidence) again with payload, and
// returns how many times it has done so, this one included. The revival
// stays journalled (PendingRevivals) until RevivalDone, so that a pass
// interrupted between deleting the archived task and enqueueing its
// successor is finished by the next.
func (s *Store) NoteRevival(ctx context.Context, appID, orderNo, phase string, payload []byte, now time.Time) (int, error) {
	if phase != PhaseDecision && phase != PhaseEvidence {
		return 0, fmt.Errorf("orderstore: unknown phase %q", phase)
	}
	n, err := noteRevivalScript.Run(ctx, s.rdb,
		[]string{RecordKey(appID, orderNo), stateKey(appID, orderNo), JournalKey},
		phase, payload, journalMember(phase, appID, orderNo), now.UnixMilli(), s.ttl.Milliseconds()).Int()
	if err != nil {
		return 0, fmt.Errorf("note revival: %w", err)
	}
	return n, nil
}

// RevivalDone clears the journal entry of a revival whose task is queued
// again (or no longer needs to be).
func (s *Store) RevivalDone(ctx context.Context, appID, orderNo, phase string) error {
	err := doneRevivalScript.Run(ctx, s.rdb, []string{stateKey(appID, orderNo), JournalKey},
		phase, journalMember(phase, appID, orderNo)).Err()
	if err != nil {
		return fmt.Errorf("clear revival journal: %w", err)
	}
	return nil
}

// PendingRevival is a journalled revival: its phase, order and payload.
type PendingRevival struct {
	Phase, AppID, OrderNo string
	Payload               []byte // nil when the bookkeeping has expired
}

// PendingRevivals returns up to limit journalled revivals noted before
// olderThan, oldest first.
func (s *Store) PendingRevivals(ctx context.Context, olderThan time.Time, limit int) ([]PendingRevival, error) {
	members, err := s.rdb.ZRangeArgs(ctx, redis.ZRangeArgs{
		Key: JournalKey, ByScore: true, Start: "-inf", Stop: fmt.Sprint(olderThan.UnixMilli()), Count: int64(limit),
	}).Result()
	if err != nil {
		return nil, fmt.Errorf("read revival journal: %w", err)
	}
	out := make([]PendingRevival, 0, len(members))
	for _, m := range members {
		parts := strings.Split(m, ":")
		if len(parts) != 3 || (parts[0] != PhaseDecision && parts[0] != PhaseEvidence) {
			// Not ours to interpret; dropping it keeps the journal from
			// growing.
			_ = s.rdb.ZRem(ctx, JournalKey, m).Err()
			continue
		}
		p := PendingRevival{Phase: parts[0], AppID: parts[1], OrderNo: parts[2]}
		b, err := s.rdb.HGet(ctx, stateKey(p.AppID, p.OrderNo), fieldRevive+p.Phase).Bytes()
		if err != nil && !errors.Is(err, redis.Nil) {
			return nil, fmt.Errorf("read revival journal: %w", err)
		}
		p.Payload = b
		out = append(out, p)
	}
	return out, nil
}
