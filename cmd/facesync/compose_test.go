package main

import (
	"bufio"
	"maps"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"

	"github.com/facesync/facesync/cmd/facesync/api"
)

// No Docker engine runs where the tests do, so docker-compose.yml is
// checked with the Compose specification's own loader (schema validation,
// interpolation, normalization, consistency) and the worker's environment
// with facesync's own configuration parser.

// loadCompose loads docker-compose.yml the way `docker compose` does from
// the repository root, with an empty environment so the file's defaults
// are what is checked, whatever the shell running the tests has set.
func loadCompose(t *testing.T, profiles ...string) *types.Project {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	opts, err := cli.NewProjectOptions(
		[]string{filepath.Join(root, "docker-compose.yml")},
		cli.WithWorkingDirectory(root),
		cli.WithEnv(nil),
		cli.WithInterpolation(true),
		cli.WithNormalization(true),
		cli.WithConsistency(true),
		cli.WithResolvedPaths(true),
		cli.WithProfiles(profiles),
	)
	if err != nil {
		t.Fatalf("cli.NewProjectOptions: %v", err)
	}
	p, err := opts.LoadProject(t.Context())
	if err != nil {
		t.Fatalf("loading docker-compose.yml: %v", err)
	}
	return p
}

// service returns the named service or stops the test.
func service(t *testing.T, p *types.Project, name string) types.ServiceConfig {
	t.Helper()
	s, ok := p.Services[name]
	if !ok {
		t.Fatalf("docker-compose.yml has no service %q (has %v)", name, slices.Sorted(maps.Keys(p.Services)))
	}
	return s
}

// environ is a service's environment as a getenv function; a variable
// passed through from the host (no value in the file) reads as unset.
func environ(s types.ServiceConfig) func(string) string {
	return func(k string) string {
		if v := s.Environment[k]; v != nil {
			return *v
		}
		return ""
	}
}

func TestComposeServices(t *testing.T) {
	t.Parallel()
	p := loadCompose(t)
	tests := []struct {
		name        string
		healthcheck bool
		ports       []string // host_ip:published:target, all of them
	}{
		{"redis", true, nil},
		{"minio", true, []string{"127.0.0.1:9000:9000", "127.0.0.1:9001:9001"}},
		{"create-bucket", false, nil},
		{"fake-idasc", true, []string{"127.0.0.1:8081:8081"}},
		{"worker", true, nil},
		{"api", true, []string{"127.0.0.1:8082:8080"}},
		{"asynqmon", false, []string{"127.0.0.1:8080:8080"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := service(t, p, tt.name)
			hc := s.HealthCheck != nil && !s.HealthCheck.Disable && len(s.HealthCheck.Test) > 0
			if tt.healthcheck && !hc {
				t.Errorf("services[%q].healthcheck = %+v, want a test command", tt.name, s.HealthCheck)
			}
			var ports []string
			for _, pc := range s.Ports {
				ports = append(ports, pc.HostIP+":"+pc.Published+":"+strconv.FormatUint(uint64(pc.Target), 10))
			}
			if !slices.Equal(ports, tt.ports) {
				t.Errorf("services[%q].ports = %q, want %q", tt.name, ports, tt.ports)
			}
		})
	}
}

func TestComposeWorkerDependsOn(t *testing.T) {
	t.Parallel()
	w := service(t, loadCompose(t), "worker")
	want := map[string]string{
		"redis":         types.ServiceConditionHealthy,
		"minio":         types.ServiceConditionHealthy,
		"create-bucket": types.ServiceConditionCompletedSuccessfully,
		"fake-idasc":    types.ServiceConditionHealthy,
	}
	for dep, cond := range want {
		d, ok := w.DependsOn[dep]
		if !ok || d.Condition != cond || !d.Required {
			t.Errorf("worker.depends_on[%q] = %+v (present %v), want required, condition %q", dep, d, ok, cond)
		}
	}
}

func TestComposeWorkerReplicas(t *testing.T) {
	t.Parallel()
	w := service(t, loadCompose(t), "worker")
	if got := w.GetScale(); got != 3 {
		t.Errorf("worker.GetScale() = %d, want 3", got)
	}
	if !slices.Equal(w.Command, types.ShellCommand{"worker"}) {
		t.Errorf("worker.command = %q, want [worker]", w.Command)
	}
	if !slices.Contains(w.Expose, "9090") {
		t.Errorf("worker.expose = %q, want 9090 (metrics, health)", w.Expose)
	}
}

func TestComposeRedisAppendOnly(t *testing.T) {
	t.Parallel()
	r := service(t, loadCompose(t), "redis")
	i := slices.Index(r.Command, "--appendonly")
	if i < 0 || i+1 >= len(r.Command) || r.Command[i+1] != "yes" {
		t.Errorf("redis.command = %q, want --appendonly yes", r.Command)
	}
}

// TestComposeWorkerConfig feeds the worker's environment to the parser
// `facesync worker` uses, so a renamed variable or a bad value fails here
// rather than at `docker compose up`.
func TestComposeWorkerConfig(t *testing.T) {
	t.Parallel()
	p := loadCompose(t)
	w := service(t, p, "worker")
	for _, k := range []string{
		"FACESYNC_REDIS_URL", "FACESYNC_APPS", "FACESYNC_IDASC_URL", "FACESYNC_S3_BUCKET",
		"FACESYNC_S3_ENDPOINT", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
	} {
		if environ(w)(k) == "" {
			t.Errorf("worker.environment[%q] is unset, want a value", k)
		}
	}
	c, err := LoadConfig(environ(w))
	if err != nil {
		t.Fatalf("LoadConfig(worker.environment) = %v, want no error", err)
	}
	if err := c.requireWorker(); err != nil {
		t.Errorf("LoadConfig(worker.environment).requireWorker() = %v, want nil", err)
	}

	// Each address the worker dials names a service it waits for.
	for _, tt := range []struct {
		name, raw, service, port string
	}{
		{"FACESYNC_REDIS_URL", c.RedisURL, "redis", "6379"},
		{"FACESYNC_IDASC_URL", c.IdascURL, "fake-idasc", "8081"},
		{"FACESYNC_S3_ENDPOINT", c.S3Endpoint, "minio", "9000"},
	} {
		u, err := url.Parse(tt.raw)
		if err != nil || u.Hostname() != tt.service || u.Port() != tt.port {
			t.Errorf("worker %s = %q, want host %s port %s", tt.name, tt.raw, tt.service, tt.port)
		}
		if _, ok := w.DependsOn[tt.service]; !ok {
			t.Errorf("worker.depends_on lacks %q, which %s names", tt.service, tt.name)
		}
	}

	// The fake provider serves the apps and secrets the workers sign with,
	// on the port they dial.
	f := service(t, p, "fake-idasc")
	fc, err := LoadConfig(environ(f))
	if err != nil {
		t.Fatalf("LoadConfig(fake-idasc.environment) = %v, want no error", err)
	}
	if !maps.Equal(fc.Apps, c.Apps) {
		// Secrets stay out of the message, even local ones.
		t.Errorf("fake-idasc FACESYNC_APPS (ids %v) differs from worker's (ids %v), want the same ids and secrets",
			slices.Sorted(maps.Keys(fc.Apps)), slices.Sorted(maps.Keys(c.Apps)))
	}
	if want := (types.ShellCommand{"fake-idasc", "--addr", "0.0.0.0:8081"}); !slices.Equal(f.Command, want) {
		t.Errorf("fake-idasc.command = %q, want %q", f.Command, want)
	}

	// The workers' S3 credentials are MinIO's root user, and the one-shot
	// job creates the bucket they write to.
	m := environ(service(t, p, "minio"))
	if c.AWSAccessKeyID != m("MINIO_ROOT_USER") || c.AWSSecretAccessKey != m("MINIO_ROOT_PASSWORD") {
		t.Errorf("worker AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY differ from minio's MINIO_ROOT_USER/MINIO_ROOT_PASSWORD")
	}
	b := service(t, p, "create-bucket")
	if want := "local/" + c.S3Bucket; !slices.Contains(b.Command, want) {
		t.Errorf("create-bucket.command = %q, want it to create %q", b.Command, want)
	}
	mc, err := url.Parse(environ(b)("MC_HOST_local"))
	if err != nil || mc.Host != "minio:9000" || mc.User.Username() != m("MINIO_ROOT_USER") {
		t.Errorf("create-bucket MC_HOST_local does not reach minio:9000 as MinIO's root user")
	} else if pw, _ := mc.User.Password(); pw != m("MINIO_ROOT_PASSWORD") {
		t.Errorf("create-bucket MC_HOST_local password differs from minio's MINIO_ROOT_PASSWORD")
	}
}

// localAPIKey is the API key of the local stack (docker-compose.yml, the
// README's curl examples).
const localAPIKey = "local-only-api-key-not-a-secret"

// TestComposeAPI feeds the api service's environment to the parsers
// `facesync api` uses, and checks it reaches what the workers reach, signs
// links for MinIO's published port and mounts a keys file holding the
// local key.
func TestComposeAPI(t *testing.T) {
	t.Parallel()
	p := loadCompose(t)
	a := service(t, p, "api")
	if !slices.Equal(a.Command, types.ShellCommand{"api"}) {
		t.Errorf("api.command = %q, want [api]", a.Command)
	}
	c, err := LoadConfig(environ(a))
	if err != nil {
		t.Fatalf("LoadConfig(api.environment) = %v, want no error", err)
	}
	if err := c.requireAPI(); err != nil {
		t.Errorf("api: %v", err)
	}
	w, err := LoadConfig(environ(service(t, p, "worker")))
	if err != nil {
		t.Fatal(err)
	}
	if c.RedisURL != w.RedisURL || c.S3Bucket != w.S3Bucket || c.S3Endpoint != w.S3Endpoint || c.S3Prefix != w.S3Prefix ||
		c.AWSAccessKeyID != w.AWSAccessKeyID || c.AWSSecretAccessKey != w.AWSSecretAccessKey {
		t.Errorf("api's Redis, bucket, endpoint, prefix or S3 credentials differ from the workers'")
	}
	for _, dep := range []string{"redis", "minio", "create-bucket"} {
		if _, ok := a.DependsOn[dep]; !ok {
			t.Errorf("api.depends_on lacks %q", dep)
		}
	}

	// Links open from the host: they are signed for MinIO's S3 port as
	// published on loopback.
	u, err := url.Parse(c.S3PublicEndpoint)
	if err != nil {
		t.Fatal(err)
	}
	published := false
	for _, pc := range service(t, p, "minio").Ports {
		if pc.Target == 9000 && pc.HostIP == u.Hostname() && pc.Published == u.Port() {
			published = true
		}
	}
	if !published {
		t.Errorf("FACESYNC_S3_PUBLIC_ENDPOINT %q is not MinIO's S3 port 9000 as published", c.S3PublicEndpoint)
	}
	_, port, err := net.SplitHostPort(c.APIAddr)
	if err != nil || len(a.Ports) != 1 || strconv.FormatUint(uint64(a.Ports[0].Target), 10) != port {
		t.Errorf("api publishes %+v, want FACESYNC_API_ADDR's port %s", a.Ports, port)
	}

	var content string
	for _, sc := range a.Configs {
		if sc.Target == c.APIKeysFile {
			content = p.Configs[sc.Source].Content
		}
	}
	keys, err := api.ParseKeys(strings.NewReader(content))
	if err != nil {
		t.Fatalf("the keys file mounted at FACESYNC_API_KEYS_FILE: %v", err)
	}
	if k := keys.Lookup(localAPIKey); k == nil || !k.Allows("TIDADEMO") {
		t.Errorf("the mounted keys file has no key %q for TIDADEMO", localAPIKey)
	}
	readme, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(readme), "Bearer "+localAPIKey) || !strings.Contains(string(readme), "http://localhost:8082/v1/orders") {
		t.Errorf("README.md does not show curl with the local key against http://localhost:8082")
	}
}

// TestComposeBuild checks that the services built from this repository
// use cmd/facesync/Dockerfile, and that its runtime image has what the
// health checks run (wget) and runs facesync as a non-root user.
func TestComposeBuild(t *testing.T) {
	t.Parallel()
	p := loadCompose(t)
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"fake-idasc", "worker", "api"} {
		s := service(t, p, name)
		if s.Build == nil {
			t.Errorf("services[%q].build is missing, want this repository", name)
			continue
		}
		if s.Build.Context != root {
			t.Errorf("services[%q].build.context = %q, want %q", name, s.Build.Context, root)
		}
		df := s.Build.Dockerfile
		if !filepath.IsAbs(df) {
			df = filepath.Join(s.Build.Context, df)
		}
		if df != filepath.Join(root, "cmd", "facesync", "Dockerfile") {
			t.Errorf("services[%q].build.dockerfile = %q, want cmd/facesync/Dockerfile", name, s.Build.Dockerfile)
		}
		if hc := s.HealthCheck; hc != nil && len(hc.Test) > 1 && hc.Test[1] != "wget" {
			t.Errorf("services[%q].healthcheck.test = %q, want wget (the runtime image has no curl)", name, hc.Test)
		}
	}

	from, user, entrypoint := dockerfileFinalStage(t, filepath.Join(root, "cmd", "facesync", "Dockerfile"))
	if !strings.HasPrefix(from, "alpine:") {
		t.Errorf("Dockerfile runtime stage FROM %q, want alpine (busybox wget for the health checks)", from)
	}
	if user == "" || user == "root" || strings.HasPrefix(user, "0") {
		t.Errorf("Dockerfile runtime stage USER %q, want a non-root user", user)
	}
	if entrypoint != `["facesync"]` {
		t.Errorf("Dockerfile runtime stage ENTRYPOINT %s, want [\"facesync\"]", entrypoint)
	}
}

// dockerfileFinalStage returns the image, USER and ENTRYPOINT of a
// Dockerfile's last stage.
func dockerfileFinalStage(t *testing.T, path string) (from, user, entrypoint string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		instr, arg, _ := strings.Cut(strings.TrimSpace(sc.Text()), " ")
		arg = strings.TrimSpace(arg)
		switch strings.ToUpper(instr) {
		case "FROM":
			from, _, _ = strings.Cut(arg, " ")
			user, entrypoint = "", ""
		case "USER":
			user = arg
		case "ENTRYPOINT":
			entrypoint = arg
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return from, user, entrypoint
}

// TestComposeHAProfile checks the optional profile "ha": a Redis master, a
// replica of it, three sentinels monitoring it under the name worker-ha's
// URL gives, and worker-ha reaching Redis through those sentinels only.
// Without the profile none of it starts.
func TestComposeHAProfile(t *testing.T) {
	t.Parallel()
	ha := []string{"redis-ha-master", "redis-ha-replica", "sentinel-1", "sentinel-2", "sentinel-3", "worker-ha"}
	plain := loadCompose(t)
	for _, name := range ha {
		if _, ok := plain.Services[name]; ok {
			t.Errorf("services[%q] starts without --profile ha", name)
		}
	}

	p := loadCompose(t, "ha")
	for _, name := range ha {
		if s := service(t, p, name); !slices.Equal(s.Profiles, []string{"ha"}) {
			t.Errorf("services[%q].profiles = %q, want [ha]", name, s.Profiles)
		}
	}
	master := service(t, p, "redis-ha-master")
	if master.HealthCheck == nil || len(master.HealthCheck.Test) == 0 {
		t.Errorf("redis-ha-master has no health check")
	}
	replica := service(t, p, "redis-ha-replica")
	if i := slices.Index(replica.Command, "--replicaof"); i < 0 || i+2 >= len(replica.Command) ||
		replica.Command[i+1] != "redis-ha-master" || replica.Command[i+2] != "6379" {
		t.Errorf("redis-ha-replica.command = %q, want --replicaof redis-ha-master 6379", replica.Command)
	}

	w := service(t, p, "worker-ha")
	c, err := LoadConfig(environ(w))
	if err != nil {
		t.Fatalf("LoadConfig(worker-ha.environment) = %v, want no error", err)
	}
	if err := c.requireWorker(); err != nil {
		t.Errorf("LoadConfig(worker-ha.environment).requireWorker() = %v, want nil", err)
	}
	if !c.redis.Sentinel() {
		t.Fatalf("worker-ha FACESYNC_REDIS_URL = %q, want redis-sentinel://", c.RedisURL)
	}
	var sentinels []string
	for _, a := range c.redis.Addrs {
		host, port, _ := strings.Cut(a, ":")
		sentinels = append(sentinels, host)
		if port != "26379" {
			t.Errorf("worker-ha dials sentinel %s, want port 26379", a)
		}
		if d, ok := w.DependsOn[host]; !ok || d.Condition != types.ServiceConditionHealthy {
			t.Errorf("worker-ha.depends_on[%q] = %+v (present %v), want condition healthy", host, d, ok)
		}
	}
	if !slices.Equal(sentinels, []string{"sentinel-1", "sentinel-2", "sentinel-3"}) {
		t.Errorf("worker-ha sentinels = %q, want sentinel-1, sentinel-2, sentinel-3", sentinels)
	}
	if got := w.GetScale(); got != 2 {
		t.Errorf("worker-ha.GetScale() = %d, want 2", got)
	}
	// The same stack otherwise: provider, bucket and apps of the worker.
	plainC, err := LoadConfig(environ(service(t, p, "worker")))
	if err != nil {
		t.Fatal(err)
	}
	if c.IdascURL != plainC.IdascURL || c.S3Bucket != plainC.S3Bucket || c.S3Endpoint != plainC.S3Endpoint || !maps.Equal(c.Apps, plainC.Apps) {
		t.Errorf("worker-ha's provider, bucket or apps differ from worker's")
	}

	// Each sentinel runs in sentinel mode, on the port dialled, monitoring
	// the master under worker-ha's master name with quorum 2.
	monitor := "sentinel monitor " + c.redis.MasterName + " redis-ha-master 6379 2"
	for _, name := range sentinels {
		s := service(t, p, name)
		script := strings.Join(s.Command, " ")
		for _, want := range []string{"port 26379", "sentinel resolve-hostnames yes", monitor, "--sentinel"} {
			if !strings.Contains(script, want) {
				t.Errorf("services[%q].command = %q, want it to hold %q", name, s.Command, want)
			}
		}
		if s.HealthCheck == nil || !slices.Contains(s.HealthCheck.Test, "26379") {
			t.Errorf("services[%q].healthcheck = %+v, want redis-cli -p 26379 ping", name, s.HealthCheck)
		}
		for _, dep := range []string{"redis-ha-master", "redis-ha-replica"} {
			if _, ok := s.DependsOn[dep]; !ok {
				t.Errorf("services[%q].depends_on lacks %q", name, dep)
			}
		}
	}
}
