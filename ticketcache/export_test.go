package ticketcache

import "time"

// SetTicketBackoff shortens the pause between ticket attempts in tests.
func SetTicketBackoff(c *Cache, d time.Duration) { c.ticketBackoff = d }
