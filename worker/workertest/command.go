package workertest

import (
	"maps"
	"slices"

	"github.com/facesync/facesync/storage/storagetest"
)

// Command is what a facesync command (the built binary, or Main in the
// test's process) needs of a test's world: its Redis, one app, the fake
// provider and the S3 server. The binary's fault and benchmark suites and
// the command tests all run their commands on it.
type Command struct {
	RedisURL string
	AppID    string
	Secret   string
	IdascURL string
	S3       *storagetest.Server
}

// Vars are the command's FACESYNC_* and AWS_* variables: c's parts, the
// ops port on a free loopback port and a 5 s shutdown timeout.
func (c Command) Vars() map[string]string {
	return map[string]string{
		"FACESYNC_REDIS_URL":        c.RedisURL,
		"FACESYNC_APPS":             c.AppID + "=" + c.Secret,
		"FACESYNC_IDASC_URL":        c.IdascURL,
		"FACESYNC_S3_BUCKET":        c.S3.Bucket,
		"FACESYNC_S3_ENDPOINT":      c.S3.Endpoint,
		"AWS_ACCESS_KEY_ID":         c.S3.AccessKey,
		"AWS_SECRET_ACCESS_KEY":     c.S3.SecretKey,
		"FACESYNC_HTTP_ADDR":        "127.0.0.1:0",
		"FACESYNC_SHUTDOWN_TIMEOUT": "5s",
	}
}

// Env is Vars as a child process's environment on CleanEnv(home), extra
// (NAME=value) last: a later entry wins.
func (c Command) Env(home string, extra ...string) []string {
	vars := c.Vars()
	env := CleanEnv(home)
	for _, k := range slices.Sorted(maps.Keys(vars)) {
		env = append(env, k+"="+vars[k])
	}
	return append(env, extra...)
}
