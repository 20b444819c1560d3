package main

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/facesync/facesync/storage"
	"github.com/facesync/facesync/worker/orderstore"
	"github.com/facesync/facesync/worker/redisconn"
)

// newLogger builds the zap logger FACESYNC_LOG_FORMAT and _LEVEL ask for.
func newLogger(c *Config, m *Main) (*zap.Logger, error) {
	lvl, err := zapcore.ParseLevel(c.LogLevel)
	if err != nil {
		return nil, &configError{"FACESYNC_LOG_LEVEL", err.Error()}
	}
	enc := zap.NewProductionEncoderConfig()
	enc.TimeKey = "ts"
	enc.EncodeTime = zapcore.ISO8601TimeEncoder
	var e zapcore.Encoder
	if c.LogFormat == "console" {
		enc.EncodeLevel = zapcore.CapitalLevelEncoder
		e = zapcore.NewConsoleEncoder(enc)
	} else {
		e = zapcore.NewJSONEncoder(enc)
	}
	return zap.New(zapcore.NewCore(e, zapcore.AddSync(m.Stderr), lvl)), nil
}

var libraryLogsOnce sync.Once

// routeLibraryLogs sends go-redis's own logs and the standard logger (the
// S3 transfer manager writes there) through zap. Both are process-wide, so
// the first worker of a process sets them.
func routeLibraryLogs(log *zap.Logger, burst *redisconn.BurstLog) {
	libraryLogsOnce.Do(func() {
		// Dial failures during a failover come once per pooled
		// connection: one line per burst instead.
		redis.SetLogger(burst.RedisLogger(redisLogger{log.Named("redis").Sugar()}))
		zap.RedirectStdLog(log.Named("stdlog"))
	})
}

// redisLogger routes go-redis's own logs through zap.

type redisLogger struct{ s *zap.SugaredLogger }

func (l redisLogger) Printf(_ context.Context, format string, v ...any) { l.s.Warnf(format, v...) }

// connectRedis returns the process's one Redis client, built from the
// parsed FACESYNC_REDIS_URL (a single node, or the master that Sentinel
// names, followed across failovers), once a writable master answered
// within a few seconds. Everything of the process uses it: the order
// store, the ticket cache, and asynq's servers, client and inspector
// through asynq.New*FromRedisClient. Sharing gives one pool sized for
// every task in flight (Config.redis.PoolSize) and one Sentinel
// subscription per process that moves every user at once, where asynq's
// own connection options would open a pool and a Sentinel watcher for
// each server, client and inspector. asynq then never closes the client:
// the caller does, after the servers stopped.
func connectRedis(ctx context.Context, c *Config) (*redis.Client, error) {
	rdb, err := c.redis.Connect(ctx, 5*time.Second)
	if err != nil {
		return nil, infraErr(err)
	}
	return rdb, nil
}

// redisConfig loads the configuration and connects to its Redis: the
// preamble of every command that works on Redis. The caller closes the
// client.
func (m *Main) redisConfig(ctx context.Context) (*Config, *redis.Client, error) {
	c, err := m.config()
	if err != nil {
		return nil, nil, err
	}
	rdb, err := connectRedis(ctx, c)
	if err != nil {
		return nil, nil, err
	}
	return c, rdb, nil
}

// openStore connects to Redis and opens the order store on it, for the
// commands that read or change orders. The caller closes the client.
func openStore(ctx context.Context, c *Config) (*redis.Client, *orderstore.Store, error) {
	rdb, err := connectRedis(ctx, c)
	if err != nil {
		return nil, nil, err
	}
	store, err := orderstore.New(rdb, orderstore.Config{TTL: c.DecisionTTL})
	if err != nil {
		_ = rdb.Close()
		return nil, nil, usageErr("%v", err)
	}
	return rdb, store, nil
}

// newS3Client builds the S3 client from FACESYNC_S3_* and the AWS default
// credential chain.
func newS3Client(ctx context.Context, c *Config, hc *http.Client) (*s3.Client, error) {
	opts := []func(*awsconfig.LoadOptions) error{awsconfig.WithRegion(c.S3Region)}
	if hc != nil {
		opts = append(opts, awsconfig.WithHTTPClient(hc))
	}
	if c.AWSAccessKeyID != "" && c.AWSSecretAccessKey != "" {
		// Read through Main's environment, so tests and the demo need not
		// touch the process's.
		opts = append(opts, awsconfig.WithCredentialsProvider(
			credentials.NewStaticCredentialsProvider(c.AWSAccessKeyID, c.AWSSecretAccessKey, c.AWSSessionToken)))
	}
	cfg, err := awsconfig.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("aws configuration: %w", err)
	}
	return s3.NewFromConfig(cfg, func(o *s3.Options) {
		if c.S3Endpoint != "" {
			o.BaseEndpoint = aws.String(c.S3Endpoint)
		}
		o.UsePathStyle = c.S3PathStyle
	}), nil
}

// newSink builds the S3 evidence sink.
func newSink(ctx context.Context, c *Config) (*storage.S3, error) {
	if err := c.requireBucket(); err != nil {
		return nil, err
	}
	client, err := newS3Client(ctx, c, nil)
	if err != nil {
		return nil, err
	}
	return storage.NewS3(client, c.storageConfig())
}

// pingSink checks the bucket answers, within a few seconds.
func pingSink(ctx context.Context, s storage.Sink) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := s.Ping(ctx); err != nil {
		return fmt.Errorf("evidence bucket unreachable (FACESYNC_S3_*): %v", err)
	}
	return nil
}
