// Package ticketcache shares one access token and one SIGN ticket per app
// between every facesync worker pod (and the partner's own backend) through
// Redis, so the fleet behaves towards the provider as a single client.
//
// The provider kills an access token, and every ticket made from it, about a
// minute after a newer token is fetched. So exactly one process at a time
// refreshes an app's pair, under a Redis lock, fetching one token and one
// ticket made with it; everyone else reads the pair from Redis (and from a
// memo of a few seconds in each process).
//
// The package knows Redis and time, nothing of HTTP or of the provider: the
// two fetches are functions the caller hands in ([FetchTokenFunc],
// [FetchTicketFunc]).
//
// # Refresh
//
// [Cache.Get] refreshes an app's pair when it is [Options.MaxAge] old (20
// minutes), when its ticket or token has less than [Options.MinRemaining]
// left (600 s), when the provider refused its generation ([Cache.Reject]) or
// when there is none; the reasons are counted as age, expiry, rejected and
// empty. One process refreshes, holding the lock, which expires after
// [Options.LockTTL] should that process die. Meanwhile the others keep the
// current ticket, which the provider honours through its overlap; when there
// is no usable ticket they wait up to [Options.WaitEmpty], then fail with
// [ErrNoTicket]. A refresh mints one token and makes one ticket with it,
// retrying the ticket a few times with the same token.
//
// # The Redis entry
//
// Each app has one Redis hash, [Key] ("facesync:ticket:" + app id). Partner
// backends in any language read it (HGETALL) and, when facesync runs with
// FACESYNC_TICKET_SOURCE=external, write it. All values are strings; times
// are Unix milliseconds, lifetimes whole seconds as the provider returns them
// (expire_in).
//
//	field                        value
//	access_token                 the app's current access token; the only one a partner may use
//	access_token_fetched_at_ms   when it was fetched (Unix ms)
//	access_token_expire_in_s     its lifetime in seconds (7200 usually)
//	ticket                       the current SIGN ticket
//	ticket_fetched_at_ms         when it was fetched (Unix ms)
//	ticket_expire_in_s           its lifetime in seconds (3600 or less)
//	generation                   increases by one with every new ticket
//	rejected_generation          a generation the provider refused (written by facesync)
//	needs_ticket                 "1" while access_token is newer than ticket (written by facesync)
//
// A partner backend reads the token with HGET facesync:ticket:APPID
// access_token (Go partners: [Cache.AccessToken]) each time it needs one, or
// at least every few seconds: facesync replaces it about every 20 minutes,
// and the provider kills the previous one a minute later. It never fetches a
// token of its own.
//
// needs_ticket is set when facesync stored a freshly minted token but has not
// yet stored a ticket made with it (the ticket fetch failed or is under way):
// the ticket still present was made with the previous token and stays valid
// for the provider's one-minute overlap only, and the next refresher fetches
// a ticket with the stored token instead of minting another token, which
// would kill this one. Storing the token at once is deliberate: partners must
// switch to it within that minute anyway.
//
// The lock is a separate key, [LockKey] (the entry key + ":lock"), holding a
// random owner token with an expiry. A Redis Cluster would need both keys in
// one slot; facesync uses one master (alone, or with Sentinel).
//
// # Failover (Redis Sentinel)
//
// Redis replicates asynchronously, so a lock taken on a master that dies
// before passing it to a replica is gone on the new master, and a second
// process can take it there. The lock still has one holder at a time on
// each master, and only one holder can write: every write of the pair is a
// script that checks the lock's owner token on the master it runs on, so
// the first process's writes, now reaching the new master, find another
// owner (or none) and fail (the refresh ends with "refresh lock expired
// before the write"); only one pair is ever stored. Both processes may
// believe they hold the lock for a while, at most until the first gives
// up, four fifths of [Options.LockTTL] after taking it, and both may have
// minted a token by then: at most one extra mint per app and failover. If
// the extra token is the newer one, the provider kills the stored one
// about a minute later; the refused ticket leads to [Cache.Reject] and one
// more refresh.
//
// [Options.ConfirmFunc] closes most of that gap: in Sentinel mode facesync
// passes a wait for every replica the sentinels count as up (WAIT), called
// after the lock is taken and before anything is minted, and a lock they
// did not all acknowledge counts as not held. Whichever replica Sentinel
// then promotes holds the lock, so a confirmed lock survives the failover
// and its holder's writes go on succeeding on the new master. The bound
// above remains the worst case, should the sentinels' count of replicas be
// out of date.
//
// # External source
//
// With FACESYNC_TICKET_SOURCE=external ([External]) the partner's backend
// owns the refresh and facesync only reads. The partner writes the whole
// pair in one transaction, for example:
//
//	MULTI
//	HSET facesync:ticket:APPID access_token T access_token_fetched_at_ms 1764291723000 access_token_expire_in_s 7200 ticket K ticket_fetched_at_ms 1764291723500 ticket_expire_in_s 3600
//	HINCRBY facesync:ticket:APPID generation 1
//	HDEL facesync:ticket:APPID needs_ticket rejected_generation
//	EXEC
//
// Go partners can call [Publish], which does the same. facesync uses the
// ticket until ticket_fetched_at_ms + ticket_expire_in_s; refreshing before
// then is the owner's job. A refused ticket is logged with its generation.
package ticketcache
