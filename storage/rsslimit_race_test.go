//go:build race

package storage_test

// rssLimitMiB is the most a 200 MB upload may make the process hold. The
// race detector multiplies memory use several times (about 120 MiB
// measured), so the bound is looser; it still fails an upload that holds
// the whole file.
const rssLimitMiB = 256
