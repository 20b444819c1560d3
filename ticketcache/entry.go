package ticketcache

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// KeyPrefix starts every key of this package.
const KeyPrefix = "facesync:ticket:"

// Field names of the entry hash: a stored contract read by partners in other
// languages (see the package documentation).
const (
	FieldAccessToken          = "access_token"
	FieldAccessTokenFetchedAt = "access_token_fetched_at_ms"
	FieldAccessTokenExpireIn  = "access_token_expire_in_s"
	FieldTicket               = "ticket"
	FieldTicketFetchedAt      = "ticket_fetched_at_ms"
	FieldTicketExpireIn       = "ticket_expire_in_s"
	FieldGeneration           = "generation"
	FieldRejectedGeneration   = "rejected_generation"
	FieldNeedsTicket          = "needs_ticket"
)

// entryFields is the order in which readEntry asks for the fields.
var entryFields = []string{
	FieldAccessToken, FieldAccessTokenFetchedAt, FieldAccessTokenExpireIn,
	FieldTicket, FieldTicketFetchedAt, FieldTicketExpireIn,
	FieldGeneration, FieldRejectedGeneration, FieldNeedsTicket,
}

// Key returns the Redis key of an app's entry.
func Key(appID string) string { return KeyPrefix + appID }

// LockKey returns the Redis key of an app's refresh lock.
func LockKey(appID string) string { return KeyPrefix + appID + ":lock" }

// Credential is an access token or a ticket with the lifetime the provider
// gave it (expire_in).
type Credential struct {
	Value     string
	ExpiresIn time.Duration
}

// String hides the value, so that a credential printed by mistake leaks
// nothing.
func (c Credential) String() string { return fmt.Sprintf("credential (expires in %s)", c.ExpiresIn) }

// GoString hides the value from %#v too.
func (c Credential) GoString() string { return c.String() }

// Entry is an app's entry as stored in Redis. Zero fields are absent ones.
type Entry struct {
	AccessToken          string
	AccessTokenFetchedAt time.Time
	AccessTokenExpireIn  time.Duration
	Ticket               string
	TicketFetchedAt      time.Time
	TicketExpireIn       time.Duration
	Generation           int64
	RejectedGeneration   int64
	// NeedsTicket is true while AccessToken is newer than Ticket.
	NeedsTicket bool
}

// AccessTokenEnd returns when the access token expires by its own lifetime
// (the zero time when the entry does not say).
func (e Entry) AccessTokenEnd() time.Time {
	if e.AccessTokenFetchedAt.IsZero() {
		return time.Time{}
	}
	return e.AccessTokenFetchedAt.Add(e.AccessTokenExpireIn)
}

// TicketEnd returns when the ticket expires by its own lifetime (the zero
// time when the entry does not say).
func (e Entry) TicketEnd() time.Time {
	if e.TicketFetchedAt.IsZero() {
		return time.Time{}
	}
	return e.TicketFetchedAt.Add(e.TicketExpireIn)
}

// String describes the entry without its token and ticket.
func (e Entry) String() string {
	return fmt.Sprintf("entry generation %d (access token set %t, ticket set %t, needs ticket %t)",
		e.Generation, e.AccessToken != "", e.Ticket != "", e.NeedsTicket)
}

// GoString hides the token and ticket from %#v too.
func (e Entry) GoString() string { return e.String() }

// ReadEntry reads an app's entry; ok is false when there is none. A field
// that does not parse is an error naming the field (never its value).
func ReadEntry(ctx context.Context, rdb redis.Cmdable, appID string) (e Entry, ok bool, err error) {
	if err := checkAppID(appID); err != nil {
		return Entry{}, false, err
	}
	e, ok, err = readEntry(ctx, rdb, appID)
	if err != nil {
		return Entry{}, false, fmt.Errorf("ticketcache: app %s: %w", appID, err)
	}
	return e, ok, nil
}

// readEntry reads and parses the entry; its errors lack the app prefix.
func readEntry(ctx context.Context, rdb redis.Cmdable, appID string) (Entry, bool, error) {
	vals, err := rdb.HMGet(ctx, Key(appID), entryFields...).Result()
	if err != nil {
		return Entry{}, false, fmt.Errorf("read entry from redis: %w", err)
	}
	var (
		e     Entry
		found bool
		bad   string
	)
	str := func(i int) string {
		s, ok := vals[i].(string)
		if ok {
			found = true
		}
		return s
	}
	num := func(i int) int64 {
		s := str(i)
		if s == "" {
			return 0
		}
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil && bad == "" {
			bad = entryFields[i]
		}
		return n
	}
	ms := func(i int) time.Time {
		if n := num(i); n != 0 {
			return time.UnixMilli(n)
		}
		return time.Time{}
	}
	e.AccessToken = str(0)
	e.AccessTokenFetchedAt = ms(1)
	e.AccessTokenExpireIn = time.Duration(num(2)) * time.Second
	e.Ticket = str(3)
	e.TicketFetchedAt = ms(4)
	e.TicketExpireIn = time.Duration(num(5)) * time.Second
	e.Generation = num(6)
	e.RejectedGeneration = num(7)
	e.NeedsTicket = str(8) == "1"
	if bad != "" {
		return Entry{}, false, fmt.Errorf("entry field %s is not an integer", bad)
	}
	return e, found, nil
}

// publishScript writes a whole pair as a new generation. KEYS[1] entry;
// ARGV token, token fetched ms, token lifetime s, ticket, ticket fetched ms,
// ticket lifetime s.
var publishScript = redis.NewScript(`
local gen = redis.call('HINCRBY', KEYS[1], 'generation', 1)
redis.call('HSET', KEYS[1],
  'access_token', ARGV[1], 'access_token_fetched_at_ms', ARGV[2], 'access_token_expire_in_s', ARGV[3],
  'ticket', ARGV[4], 'ticket_fetched_at_ms', ARGV[5], 'ticket_expire_in_s', ARGV[6])
redis.call('HDEL', KEYS[1], 'needs_ticket', 'rejected_generation')
return gen
`)

// Publish writes a new pair fetched at fetchedAt as the app's next
// generation and returns that generation. It is for partner backends that
// own the refresh (facesync running with source [External]); it takes no
// lock, so only one writer may use it.
func Publish(ctx context.Context, rdb redis.Scripter, appID string, token, ticket Credential, fetchedAt time.Time) (int64, error) {
	if err := checkAppID(appID); err != nil {
		return 0, err
	}
	if err := checkCredential(token); err != nil {
		return 0, fmt.Errorf("ticketcache: app %s: access token: %w", appID, err)
	}
	if err := checkCredential(ticket); err != nil {
		return 0, fmt.Errorf("ticketcache: app %s: ticket: %w", appID, err)
	}
	at := strconv.FormatInt(fetchedAt.UnixMilli(), 10)
	gen, err := publishScript.Run(ctx, rdb, []string{Key(appID)},
		token.Value, at, seconds(token.ExpiresIn),
		ticket.Value, at, seconds(ticket.ExpiresIn)).Int64()
	if err != nil {
		return 0, fmt.Errorf("ticketcache: app %s: publish entry: %w", appID, err)
	}
	return gen, nil
}

// checkCredential refuses what cannot be stored or used.
func checkCredential(c Credential) error {
	switch {
	case c.Value == "":
		return errors.New("empty value")
	case c.ExpiresIn < time.Second:
		return fmt.Errorf("lifetime %s is under a second", c.ExpiresIn)
	}
	return nil
}

func seconds(d time.Duration) string { return strconv.FormatInt(int64(d/time.Second), 10) }

// checkAppID accepts app ids of 1 to 32 of A-Z a-z 0-9 _ -, so that no key is
// built from anything else. It never echoes the id: it may be anything.
func checkAppID(appID string) error {
	if len(appID) == 0 || len(appID) > 32 {
		return errBadAppID
	}
	for i := 0; i < len(appID); i++ {
		switch c := appID[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '_', c == '-':
		default:
			return errBadAppID
		}
	}
	return nil
}

var errBadAppID = errors.New("ticketcache: invalid app id: want 1 to 32 of A-Z a-z 0-9 _ -")
