package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.uber.org/zap"

	"github.com/facesync/facesync/cmd/facesync/api"
	"github.com/facesync/facesync/cmd/facesync/audit"
	"github.com/facesync/facesync/worker/orderstore"
	"github.com/facesync/facesync/worker/redisconn"
)

// runAPI runs the partner HTTP API until ctx ends (SIGTERM, SIGINT): then
// it stops accepting, lets in-flight requests finish for up to
// FACESYNC_SHUTDOWN_TIMEOUT, and exits.
func (m *Main) runAPI(ctx context.Context, args []string) error {
	if err := m.parse(m.flags("api"), args); err != nil {
		return err
	}
	c, err := m.config()
	if err != nil {
		return err
	}
	if err := c.requireAPI(); err != nil {
		return usageErr("%v", err)
	}
	keys, err := api.LoadKeys(c.APIKeysFile)
	if err != nil {
		return usageErr("FACESYNC_API_KEYS_FILE: %v", err)
	}
	if keys.Len() == 0 {
		return usageErr("FACESYNC_API_KEYS_FILE: %s holds no key", c.APIKeysFile)
	}
	log, err := newLogger(c, m)
	if err != nil {
		return usageErr("%v", err)
	}
	defer func() { _ = log.Sync() }()

	rdb, err := connectRedis(ctx, c)
	if err != nil {
		return err
	}
	defer rdb.Close()
	routeLibraryLogs(log, redisconn.NewBurstLog(log.Named("redis"), 0))
	tp, stopTracing, err := m.tracer(ctx, "facesync-api")
	if err != nil {
		return err
	}
	defer stopTracing()
	store, err := orderstore.New(rdb, orderstore.Config{TTL: c.DecisionTTL})
	if err != nil {
		return usageErr("%v", err)
	}
	sink, err := newSink(ctx, c)
	if err != nil {
		return usageErr("%v", err)
	}
	if err := pingSink(ctx, sink); err != nil {
		return infraErr(err)
	}
	internal, err := newS3Client(ctx, c, nil)
	if err != nil {
		return usageErr("%v", err)
	}
	pc := *c
	pc.S3Endpoint = c.S3PublicEndpoint
	public, err := newS3Client(ctx, &pc, nil)
	if err != nil {
		return usageErr("%v", err)
	}
	links, err := api.NewS3Links(internal, public, c.S3Bucket)
	if err != nil {
		return usageErr("%v", err)
	}

	// Both share rdb (closed above, after the server stopped).
	client := asynq.NewClientFromRedisClient(rdb)
	inspector := asynq.NewInspectorFromRedisClient(rdb)
	confirm, closeConfirm := confirmer(c, rdb, 2*time.Second)
	defer closeConfirm()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	srv, err := api.New(api.Deps{
		Keys: keys, Enqueuer: client, Tasks: inspector, Records: store, Links: links, Purged: store.Purged,
		Logger: log.Named("api"), Audit: auditLogger(m), Registerer: reg, Tracer: tp, Replicated: confirm,
	})
	if err != nil {
		return usageErr("%v", err)
	}

	ops, err := net.Listen("tcp", c.HTTPAddr)
	if err != nil {
		return infraErr(fmt.Errorf("listen on FACESYNC_HTTP_ADDR %s: %v", c.HTTPAddr, err))
	}
	opsSrv := &http.Server{Handler: opsHandler(reg, rdb, sink), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = opsSrv.Serve(ops) }()
	defer opsSrv.Close()

	ln, err := net.Listen("tcp", c.APIAddr)
	if err != nil {
		return infraErr(fmt.Errorf("listen on FACESYNC_API_ADDR %s: %v", c.APIAddr, err))
	}
	hs := api.NewHTTPServer(srv)
	served := make(chan error, 1)
	go func() { served <- hs.Serve(ln) }()

	m.mu.Lock()
	m.httpAddr = ops.Addr().String()
	m.mu.Unlock()
	m.markReady()
	log.Info("api started", zap.String("api_addr", ln.Addr().String()), zap.String("http_addr", ops.Addr().String()),
		zap.Int("keys", keys.Len()))

	select {
	case err := <-served:
		return infraErr(fmt.Errorf("serve FACESYNC_API_ADDR: %v", err))
	case <-ctx.Done():
	}
	log.Info("shutting down", zap.Duration("timeout", c.ShutdownTimeout))
	sctx, cancel := context.WithTimeout(context.Background(), c.ShutdownTimeout)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		// In-flight requests outlived the timeout: cut them off.
		_ = hs.Close()
		log.Warn("requests still in flight at the shutdown timeout were cut off")
	}
	log.Info("api stopped")
	return nil
}

// auditLogger writes audit events as JSON lines on stderr at info,
// whatever FACESYNC_LOG_FORMAT and FACESYNC_LOG_LEVEL say.
func auditLogger(m *Main) *zap.Logger { return audit.Logger(m.Stderr) }

// runAPIKey runs `facesync api-key new --apps A[,B] [--id ID]`.
func (m *Main) runAPIKey(_ context.Context, args []string) error {
	if len(args) == 0 || args[0] != "new" {
		return usageErr("want: facesync api-key new --apps A[,B] [--id KEY_ID]")
	}
	fs := m.flags("api-key new")
	apps := fs.String("apps", "", `app ids the key may act for, comma separated, or "*" for every app`)
	id := fs.String("id", "", "key id for logs (default: a random one)")
	if err := m.parse(fs, args[1:]); err != nil {
		return err
	}
	var list []string
	for _, a := range strings.Split(*apps, ",") {
		if a = strings.TrimSpace(a); a != "" {
			list = append(list, a)
		}
	}
	if err := api.WriteNewKey(m.Stdout, *id, list); err != nil {
		return usageErr("%v", err)
	}
	return nil
}
