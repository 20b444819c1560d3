//go:build !race

package storage_test

// rssLimitMiB is the most a 200 MB upload may make the process hold.
const rssLimitMiB = 64
