package main

import (
	"bufio"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/facesync/facesync/storage"
	"github.com/facesync/facesync/tasks"
	"github.com/facesync/facesync/ticketcache"
	"github.com/facesync/facesync/worker"
	"github.com/facesync/facesync/worker/orderstore"
	"github.com/facesync/facesync/worker/pacing"
	"github.com/facesync/facesync/worker/redisconn"
	"github.com/facesync/facesync/worker/webhook"
)

// Config is facesync's configuration from the environment: the FACESYNC_*
// variables (and AWS_*, OTEL_* read elsewhere), with their documented
// defaults. Each field names its variable.
type Config struct {
	RedisURL            string            // FACESYNC_REDIS_URL
	RedisCAFile         string            // FACESYNC_REDIS_CA_FILE
	Apps                map[string]string // FACESYNC_APPS, FACESYNC_APPS_FILE: app id -> secret
	IdascURL            string            // FACESYNC_IDASC_URL
	S3Bucket            string            // FACESYNC_S3_BUCKET
	S3Endpoint          string            // FACESYNC_S3_ENDPOINT
	S3Region            string            // FACESYNC_S3_REGION
	S3Prefix            string            // FACESYNC_S3_PREFIX
	S3PathStyle         bool              // FACESYNC_S3_PATH_STYLE
	S3SSE               string            // FACESYNC_S3_SSE
	S3KMSKeyID          string            // FACESYNC_S3_KMS_KEY_ID
	S3LockMode          string            // FACESYNC_S3_LOCK_MODE
	S3LockDays          int               // FACESYNC_S3_LOCK_DAYS
	AWSAccessKeyID      string            // AWS_ACCESS_KEY_ID (else the AWS default chain)
	AWSSecretAccessKey  string            // AWS_SECRET_ACCESS_KEY
	AWSSessionToken     string            // AWS_SESSION_TOKEN
	Concurrency         int               // FACESYNC_CONCURRENCY
	EvidenceConcurrency int               // FACESYNC_EVIDENCE_CONCURRENCY
	EvidenceDelay       time.Duration     // FACESYNC_EVIDENCE_DELAY
	ShutdownTimeout     time.Duration     // FACESYNC_SHUTDOWN_TIMEOUT
	HTTPAddr            string            // FACESYNC_HTTP_ADDR
	LogFormat           string            // FACESYNC_LOG_FORMAT
	LogLevel            string            // FACESYNC_LOG_LEVEL
	DecisionTTL         time.Duration     // FACESYNC_DECISION_TTL
	TicketMaxAge        time.Duration     // FACESYNC_TICKET_MAX_AGE
	TicketSource        string            // FACESYNC_TICKET_SOURCE
	ResultWait          time.Duration     // FACESYNC_RESULT_WAIT
	EvidenceWait        time.Duration     // FACESYNC_EVIDENCE_WAIT
	MaxEvidenceBytes    int64             // FACESYNC_MAX_EVIDENCE_BYTES
	PollInterval        time.Duration     // FACESYNC_POLL_INTERVAL
	APIAddr             string            // FACESYNC_API_ADDR
	APIKeysFile         string            // FACESYNC_API_KEYS_FILE
	S3PublicEndpoint    string            // FACESYNC_S3_PUBLIC_ENDPOINT
	ReconcileInterval   time.Duration     // FACESYNC_RECONCILE_INTERVAL
	EvidenceRetention   int               // FACESYNC_EVIDENCE_RETENTION, days; 0 kept until purged
	S3ReceiptPrefix     string            // FACESYNC_S3_RECEIPT_PREFIX
	S3MultipartCleanup  string            // FACESYNC_S3_MULTIPART_CLEANUP
	ProviderRate        int               // FACESYNC_PROVIDER_RATE

	redis           *redisconn.Config // RedisURL and RedisCAFile parsed: every Redis connection is built from it
	WebhooksFile    string            // FACESYNC_WEBHOOKS_FILE
	WebhookWait     time.Duration     // FACESYNC_WEBHOOK_WAIT
	WebhookInsecure bool              // FACESYNC_WEBHOOK_INSECURE

	// Webhooks are the endpoints read from WebhooksFile.
	Webhooks []webhook.Endpoint
}

// configError names the variable at fault; its message is the one line a
// user sees.
type configError struct {
	name string
	msg  string
}

func (e *configError) Error() string { return e.name + ": " + e.msg }

// LoadConfig reads the configuration through getenv, applying the
// contract's defaults. It checks every value it reads; what a command
// additionally requires (apps, a bucket) is checked by that command.
func LoadConfig(getenv func(string) string) (*Config, error) {
	r := envReader{getenv: getenv}
	c := &Config{
		RedisURL:            r.str(redisconn.EnvURL, redisconn.DefaultURL),
		RedisCAFile:         r.str(redisconn.EnvCAFile, ""),
		IdascURL:            r.str("FACESYNC_IDASC_URL", "https://idasc.webank.com"),
		S3Bucket:            r.str("FACESYNC_S3_BUCKET", ""),
		S3Endpoint:          r.str("FACESYNC_S3_ENDPOINT", ""),
		S3Region:            r.str("FACESYNC_S3_REGION", "us-east-1"),
		S3Prefix:            r.str("FACESYNC_S3_PREFIX", storage.DefaultPrefix),
		S3SSE:               r.str("FACESYNC_S3_SSE", ""),
		S3KMSKeyID:          r.str("FACESYNC_S3_KMS_KEY_ID", ""),
		S3LockMode:          r.str("FACESYNC_S3_LOCK_MODE", ""),
		S3LockDays:          r.integer("FACESYNC_S3_LOCK_DAYS", 0, 0),
		AWSAccessKeyID:      r.str("AWS_ACCESS_KEY_ID", ""),
		AWSSecretAccessKey:  r.str("AWS_SECRET_ACCESS_KEY", ""),
		AWSSessionToken:     r.str("AWS_SESSION_TOKEN", ""),
		Concurrency:         r.integer("FACESYNC_CONCURRENCY", worker.DefaultConcurrency, 1),
		EvidenceConcurrency: r.integer("FACESYNC_EVIDENCE_CONCURRENCY", worker.DefaultEvidenceConcurrency, 1),
		EvidenceDelay:       r.duration("FACESYNC_EVIDENCE_DELAY", worker.DefaultEvidenceDelay, worker.MinEvidenceDelay),
		ShutdownTimeout:     r.duration("FACESYNC_SHUTDOWN_TIMEOUT", worker.DefaultShutdownTimeout, time.Second),
		HTTPAddr:            r.str("FACESYNC_HTTP_ADDR", ":9090"),
		LogFormat:           r.oneOf("FACESYNC_LOG_FORMAT", "json", "json", "console"),
		LogLevel:            r.oneOf("FACESYNC_LOG_LEVEL", "info", "debug", "info", "warn", "error"),
		DecisionTTL:         r.duration("FACESYNC_DECISION_TTL", worker.DefaultDecisionTTL, orderstore.MinTTL),
		TicketMaxAge:        r.duration("FACESYNC_TICKET_MAX_AGE", ticketcache.DefaultMaxAge, time.Minute),
		TicketSource:        r.oneOf("FACESYNC_TICKET_SOURCE", "own", "own", "external"),
		ResultWait:          r.duration("FACESYNC_RESULT_WAIT", worker.DefaultResultWait, time.Second),
		EvidenceWait:        r.duration("FACESYNC_EVIDENCE_WAIT", worker.DefaultEvidenceWait, time.Second),
		MaxEvidenceBytes:    int64(r.integer("FACESYNC_MAX_EVIDENCE_BYTES", worker.DefaultMaxEvidenceBytes, 1)),
		PollInterval:        r.duration("FACESYNC_POLL_INTERVAL", worker.DefaultPollInterval, worker.MinPollInterval),
		APIAddr:             r.str("FACESYNC_API_ADDR", ":8080"),
		APIKeysFile:         r.str("FACESYNC_API_KEYS_FILE", ""),
		ReconcileInterval:   r.duration("FACESYNC_RECONCILE_INTERVAL", worker.DefaultReconcileInterval, time.Second),
		EvidenceRetention:   r.integer("FACESYNC_EVIDENCE_RETENTION", 0, 0),
		S3ReceiptPrefix:     r.str("FACESYNC_S3_RECEIPT_PREFIX", storage.DefaultReceiptPrefix),
		S3MultipartCleanup:  r.oneOf("FACESYNC_S3_MULTIPART_CLEANUP", storage.MultipartCleanupRule, storage.MultipartCleanupRule, storage.MultipartCleanupServer),
		ProviderRate:        r.integer("FACESYNC_PROVIDER_RATE", 0, 0),
	}
	c.S3PublicEndpoint = r.str("FACESYNC_S3_PUBLIC_ENDPOINT", c.S3Endpoint)
	c.S3PathStyle = r.boolean("FACESYNC_S3_PATH_STYLE", c.S3Endpoint != "")
	c.Apps = r.apps(c.TicketSource == "external")
	c.WebhooksFile = r.str("FACESYNC_WEBHOOKS_FILE", "")
	c.WebhookWait = r.duration("FACESYNC_WEBHOOK_WAIT", webhook.DefaultWait, time.Second)
	c.WebhookInsecure = r.boolean("FACESYNC_WEBHOOK_INSECURE", false)
	if c.WebhooksFile != "" && r.err == nil {
		var err error
		if c.Webhooks, err = webhook.LoadFile(c.WebhooksFile, c.WebhookInsecure); err != nil {
			r.fail("FACESYNC_WEBHOOKS_FILE", "%v", err)
		}
	}
	if r.err != nil {
		return nil, r.err
	}
	rc, err := redisconn.Parse(c.RedisURL, c.RedisCAFile)
	var rce *redisconn.ConfigError
	if errors.As(err, &rce) {
		return nil, &configError{rce.Var, rce.Msg}
	} else if err != nil {
		return nil, &configError{redisconn.EnvURL, err.Error()}
	}
	// The pool is shared with asynq's servers: room for every task in
	// flight, plus the ticket cache and asynq's housekeeping.
	// Every task in flight may hold a connection (and one more while it
	// waits for a replica in Sentinel mode), webhook deliveries included.
	rc.PoolSize = 2*(c.Concurrency+c.EvidenceConcurrency+webhook.DefaultConcurrency) + 20
	c.redis = rc
	if u, err := url.Parse(c.IdascURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, &configError{"FACESYNC_IDASC_URL", "want an http:// or https:// base URL"}
	}
	for name, v := range map[string]string{"FACESYNC_S3_ENDPOINT": c.S3Endpoint, "FACESYNC_S3_PUBLIC_ENDPOINT": c.S3PublicEndpoint} {
		if u, err := url.Parse(v); v != "" && (err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "") {
			return nil, &configError{name, "want an http:// or https:// URL"}
		}
	}
	// The packages own their settings' rules; this maps a refusal onto
	// the variable that set the field.
	var se *storage.ConfigError
	if err := c.storageConfig().Validate(); errors.As(err, &se) && se.Field != "Bucket" {
		return nil, &configError{storageVars[se.Field], se.Msg}
	}
	if err := c.pacingConfig().Validate(); err != nil {
		return nil, &configError{"FACESYNC_PROVIDER_RATE", err.Error()}
	}
	var we *worker.ConfigError
	if err := c.workerConfig(nil).Validate(); errors.As(err, &we) {
		return nil, &configError{workerVars[we.Field], we.Msg}
	}
	if err := c.checkLifecycle(); err != nil {
		return nil, err
	}
	return c, nil
}

// storageVars and workerVars name the variable of each Config field that
// the environment sets.
var (
	storageVars = map[string]string{
		"Bucket": "FACESYNC_S3_BUCKET", "Prefix": "FACESYNC_S3_PREFIX", "SSE": "FACESYNC_S3_SSE",
		"KMSKeyID": "FACESYNC_S3_KMS_KEY_ID", "LockMode": "FACESYNC_S3_LOCK_MODE", "LockDays": "FACESYNC_S3_LOCK_DAYS",
	}
	workerVars = map[string]string{
		"Concurrency": "FACESYNC_CONCURRENCY", "EvidenceConcurrency": "FACESYNC_EVIDENCE_CONCURRENCY",
		"EvidenceDelay": "FACESYNC_EVIDENCE_DELAY", "ShutdownTimeout": "FACESYNC_SHUTDOWN_TIMEOUT",
		"DecisionTTL": "FACESYNC_DECISION_TTL", "ResultWait": "FACESYNC_RESULT_WAIT",
		"EvidenceWait": "FACESYNC_EVIDENCE_WAIT", "MaxEvidenceBytes": "FACESYNC_MAX_EVIDENCE_BYTES",
		"PollInterval":      "FACESYNC_POLL_INTERVAL",
		"ReconcileInterval": "FACESYNC_RECONCILE_INTERVAL",
		// webhook.Config's fields, under worker.Config.Webhooks
		"Webhooks.Wait": "FACESYNC_WEBHOOK_WAIT", "Webhooks.Endpoints": "FACESYNC_WEBHOOKS_FILE",
	}
)

// storageConfig is the evidence sink's configuration.
func (c *Config) storageConfig() storage.Config {
	return storage.Config{
		Bucket: c.S3Bucket, Prefix: c.S3Prefix,
		SSE: c.S3SSE, KMSKeyID: c.S3KMSKeyID, LockMode: c.S3LockMode, LockDays: c.S3LockDays,
	}
}

// workerConfig is the worker's configuration for apps.
func (c *Config) workerConfig(apps []string) worker.Config {
	return worker.Config{
		Apps: apps, WaitReplica: c.redis != nil && c.redis.Sentinel(),
		Concurrency: c.Concurrency, EvidenceConcurrency: c.EvidenceConcurrency,
		EvidenceDelay: c.EvidenceDelay, ShutdownTimeout: c.ShutdownTimeout,
		DecisionTTL: c.DecisionTTL, ResultWait: c.ResultWait, EvidenceWait: c.EvidenceWait,
		MaxEvidenceBytes: c.MaxEvidenceBytes, PollInterval: c.PollInterval, ReconcileInterval: c.ReconcileInterval,
		Webhooks: webhook.Config{Endpoints: c.Webhooks, Insecure: c.WebhookInsecure, Wait: c.WebhookWait},
	}
}

// requireAPI checks what `facesync api` needs beyond LoadConfig.
func (c *Config) requireAPI() error {
	if c.APIKeysFile == "" {
		return &configError{"FACESYNC_API_KEYS_FILE", "required: the API keys file (facesync api-key new prints its lines)"}
	}
	return c.requireBucket()
}

// pacingConfig is the fleet-wide pacing's configuration: the default
// pauses (1 s doubling to 30 s), and the rate cap.
func (c *Config) pacingConfig() pacing.Config {
	return pacing.Config{Rate: c.ProviderRate}
}

// requireWorker checks what `facesync worker` needs beyond LoadConfig.
func (c *Config) requireWorker() error {
	if len(c.Apps) == 0 {
		if c.TicketSource == "external" {
			return &configError{"FACESYNC_APPS", "no app configured (the app ids, comma separated, or FACESYNC_APPS_FILE)"}
		}
		return &configError{"FACESYNC_APPS", "no app configured (APPID=SECRET pairs, or FACESYNC_APPS_FILE)"}
	}
	return c.requireBucket()
}

func (c *Config) requireBucket() error {
	if c.S3Bucket == "" {
		return &configError{"FACESYNC_S3_BUCKET", "required: the evidence bucket (it must exist)"}
	}
	return nil
}

// envReader reads variables and keeps the first error.
type envReader struct {
	getenv func(string) string
	err    error
}

func (r *envReader) fail(name, format string, args ...any) {
	if r.err == nil {
		r.err = &configError{name, fmt.Sprintf(format, args...)}
	}
}

func (r *envReader) str(name, def string) string {
	if v := strings.TrimSpace(r.getenv(name)); v != "" {
		return v
	}
	return def
}

func (r *envReader) oneOf(name, def string, allowed ...string) string {
	v := r.str(name, def)
	for _, a := range allowed {
		if v == a {
			return v
		}
	}
	r.fail(name, "%q is not one of %s", v, strings.Join(quoteAll(allowed), ", "))
	return def
}

func quoteAll(s []string) []string {
	out := make([]string, 0, len(s))
	for _, v := range s {
		if v != "" {
			out = append(out, strconv.Quote(v))
		}
	}
	return out
}

func (r *envReader) integer(name string, def, min int) int {
	v := r.str(name, "")
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < min {
		r.fail(name, "%q is not a whole number of at least %d", v, min)
		return def
	}
	return n
}

func (r *envReader) duration(name string, def, min time.Duration) time.Duration {
	v := r.str(name, "")
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		r.fail(name, "%q is not a duration like 1s, 5m or 168h", v)
		return def
	}
	if d < min {
		r.fail(name, "%v is below the minimum %v", d, min)
		return def
	}
	return d
}

func (r *envReader) boolean(name string, def bool) bool {
	v := r.str(name, "")
	if v == "" {
		return def
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		r.fail(name, "%q is not true or false", v)
		return def
	}
	return b
}

// apps reads FACESYNC_APPS and FACESYNC_APPS_FILE. Secrets never appear in
// an error: a bad entry is named by its position. With external tickets
// facesync needs no secret, and an entry may be a bare app id.
func (r *envReader) apps(idsOnly bool) map[string]string {
	apps := map[string]string{}
	add := func(name, where, entry string) {
		id, secret, ok := strings.Cut(strings.TrimSpace(entry), "=")
		id, secret = strings.TrimSpace(id), strings.TrimSpace(secret)
		switch {
		case (!ok || secret == "") && !idsOnly:
			r.fail(name, "%s: want APPID=SECRET", where)
		case !tasks.ValidID(id):
			r.fail(name, "%s: app id %q is not 1 to 32 characters of A-Z a-z 0-9 _ -", where, id)
		default:
			apps[id] = secret
		}
	}
	if v := r.str("FACESYNC_APPS", ""); v != "" {
		for i, e := range strings.Split(v, ",") {
			if strings.TrimSpace(e) != "" {
				add("FACESYNC_APPS", fmt.Sprintf("entry %d", i+1), e)
			}
		}
	}
	if path := r.str("FACESYNC_APPS_FILE", ""); path != "" {
		f, err := os.Open(path)
		if err != nil {
			r.fail("FACESYNC_APPS_FILE", "%v", err)
			return apps
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		for n := 1; sc.Scan(); n++ {
			line := strings.TrimSpace(sc.Text())
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			add("FACESYNC_APPS_FILE", fmt.Sprintf("line %d", n), line)
		}
		if err := sc.Err(); err != nil {
			r.fail("FACESYNC_APPS_FILE", "%v", err)
		}
	}
	return apps
}
