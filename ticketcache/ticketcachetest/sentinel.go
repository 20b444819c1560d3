package ticketcachetest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// SentinelOptions shapes a Sentinel test deployment.
type SentinelOptions struct {
	// MasterName is the name the sentinels monitor; "facesync" if empty.
	MasterName string
	// Replicas is how many replicas follow the master; 1 if 0.
	Replicas int
	// Password, when set, is required by the master and the replicas
	// (requirepass, masterauth), and given to the sentinels (auth-pass).
	Password string
	// SentinelPassword, when set, is required by the sentinels.
	SentinelPassword string
}

// Sentinels is a real Redis Sentinel deployment on loopback: a master, its
// replicas and three sentinels (quorum 2) that fail over within a few
// seconds of the master going down. Nodes[0] is the first master; after a
// failover any node may be.
type Sentinels struct {
	MasterName string
	Nodes      []*Node
	// SentinelAddrs are the sentinels' host:port, in order.
	SentinelAddrs []string
	opt           SentinelOptions
	sentinels     []*exec.Cmd
}

// Node is one data node (master or replica) of a Sentinels deployment.
type Node struct {
	Addr string
	dir  string
	args []string
	cmd  *exec.Cmd
}

// Sentinel timing: a master unanswered for downAfter is down; the
// failover-timeout also bounds one failover attempt.
const (
	downAfter       = 1000 * time.Millisecond
	failoverTimeout = 6000 * time.Millisecond
)

// StartSentinels starts a master, opt.Replicas replicas and three sentinels
// on free loopback ports, each in a temporary folder, and returns once the
// replicas are in sync and every sentinel knows the replicas and the other
// two sentinels. Everything is killed when the test ends; every process
// also dies with the test binary.
func StartSentinels(t testing.TB, opt SentinelOptions) *Sentinels {
	t.Helper()
	if opt.MasterName == "" {
		opt.MasterName = "facesync"
	}
	if opt.Replicas == 0 {
		opt.Replicas = 1
	}
	s := &Sentinels{MasterName: opt.MasterName, opt: opt}
	t.Cleanup(s.stopAll)
	auth := []string{"--replica-announce-ip", "127.0.0.1"}
	if opt.Password != "" {
		auth = append(auth, "--requirepass", opt.Password, "--masterauth", opt.Password)
	}
	master, err := startNode(t.TempDir(), auth)
	if err != nil {
		t.Fatalf("real redis-server needed: %v (run `make test`, which installs one)", err)
	}
	s.Nodes = append(s.Nodes, master)
	for i := 0; i < opt.Replicas; i++ {
		_, port, _ := net.SplitHostPort(master.Addr)
		n, err := startNode(t.TempDir(), append(append([]string{}, auth...), "--replicaof", "127.0.0.1", port))
		if err != nil {
			t.Fatalf("start replica: %v", err)
		}
		s.Nodes = append(s.Nodes, n)
	}
	for i := 0; i < 3; i++ {
		addr, cmd, err := s.startSentinel(t.TempDir(), master.Addr)
		if err != nil {
			t.Fatalf("start sentinel: %v", err)
		}
		s.SentinelAddrs = append(s.SentinelAddrs, addr)
		s.sentinels = append(s.sentinels, cmd)
	}
	if err := s.waitSettled(30 * time.Second); err != nil {
		t.Fatalf("sentinel deployment did not settle: %v", err)
	}
	return s
}

// URL returns the deployment as a redis-sentinel:// FACESYNC_REDIS_URL for
// database db, with the passwords of the options.
func (s *Sentinels) URL(db int) string {
	u := "redis-sentinel://"
	if s.opt.Password != "" {
		u += ":" + s.opt.Password + "@"
	}
	u += strings.Join(s.SentinelAddrs, ",") + "/" + strconv.Itoa(db) + "?master=" + s.MasterName
	if s.opt.SentinelPassword != "" {
		u += "&sentinel_password=" + s.opt.SentinelPassword
	}
	return u
}

// NodeClient returns a client of one data node itself, bypassing Sentinel;
// the caller closes it.
func (s *Sentinels) NodeClient(addr string, db int) *redis.Client {
	return redis.NewClient(&redis.Options{Addr: addr, Password: s.opt.Password, DB: db, MaxRetries: -1})
}

func (s *Sentinels) sentinelClient(addr string) *redis.SentinelClient {
	return redis.NewSentinelClient(&redis.Options{Addr: addr, Password: s.opt.SentinelPassword, MaxRetries: -1})
}

// MasterAddr returns the master's address as a majority of the sentinels
// name it.
func (s *Sentinels) MasterAddr(ctx context.Context) (string, error) {
	votes := map[string]int{}
	var lastErr error
	for _, a := range s.SentinelAddrs {
		sc := s.sentinelClient(a)
		r, err := sc.GetMasterAddrByName(ctx, s.MasterName).Result()
		_ = sc.Close()
		if err != nil {
			lastErr = err
			continue
		}
		addr := net.JoinHostPort(r[0], r[1])
		if votes[addr]++; votes[addr] >= 2 {
			return addr, nil
		}
	}
	if lastErr == nil {
		lastErr = errors.New("sentinels disagree")
	}
	return "", fmt.Errorf("no master named by 2 sentinels: %w", lastErr)
}

// Failover asks a sentinel to promote a replica now (SENTINEL FAILOVER) and
// returns the old master's address.
func (s *Sentinels) Failover(ctx context.Context) (string, error) {
	old, err := s.MasterAddr(ctx)
	if err != nil {
		return "", err
	}
	sc := s.sentinelClient(s.SentinelAddrs[0])
	defer sc.Close()
	if err := sc.Failover(ctx, s.MasterName).Err(); err != nil {
		return "", fmt.Errorf("SENTINEL FAILOVER: %w", err)
	}
	return old, nil
}

// KillMaster sends SIGKILL to the current master and returns its address.
func (s *Sentinels) KillMaster(ctx context.Context) (string, error) {
	addr, err := s.MasterAddr(ctx)
	if err != nil {
		return "", err
	}
	n := s.Node(addr)
	if n == nil {
		return "", fmt.Errorf("master %s is not a node of this deployment", addr)
	}
	n.Kill()
	return addr, nil
}

// Node returns the data node at addr, or nil.
func (s *Sentinels) Node(addr string) *Node {
	for _, n := range s.Nodes {
		if n.Addr == addr {
			return n
		}
	}
	return nil
}

// WaitNewMaster waits until a majority of sentinels name a master other
// than old and that node answers ROLE as master; it returns the new
// master's address.
func (s *Sentinels) WaitNewMaster(ctx context.Context, old string, d time.Duration) (string, error) {
	deadline := time.Now().Add(d)
	var last error
	for time.Now().Before(deadline) {
		addr, err := s.MasterAddr(ctx)
		if err == nil && addr != old {
			if err = s.isMaster(ctx, addr); err == nil {
				return addr, nil
			}
		}
		if err == nil {
			err = fmt.Errorf("sentinels still name %s", old)
		}
		last = err
		time.Sleep(50 * time.Millisecond)
	}
	return "", fmt.Errorf("no new master within %s: %v", d, last)
}

// WaitReplicas waits until the master at addr has n replicas in sync, for
// example after a killed node was restarted and the sentinels turned it
// into a replica.
func (s *Sentinels) WaitReplicas(ctx context.Context, addr string, n int, d time.Duration) error {
	c := s.NodeClient(addr, 0)
	defer c.Close()
	deadline := time.Now().Add(d)
	var last string
	for time.Now().Before(deadline) {
		info, err := c.Info(ctx, "replication").Result()
		if err == nil && strings.Contains(info, "role:master") && countOnline(info) >= n {
			return nil
		}
		last = info
		if err != nil {
			last = err.Error()
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("master %s has not %d replicas online within %s: %s", addr, n, d, last)
}

func countOnline(info string) int {
	n := 0
	for _, l := range strings.Split(info, "\n") {
		if strings.HasPrefix(l, "slave") && strings.Contains(l, "state=online") {
			n++
		}
	}
	return n
}

func (s *Sentinels) isMaster(ctx context.Context, addr string) error {
	c := s.NodeClient(addr, 0)
	defer c.Close()
	r, err := c.Do(ctx, "ROLE").Slice()
	if err != nil {
		return err
	}
	if len(r) == 0 || r[0] != "master" {
		return fmt.Errorf("%s answers ROLE %v", addr, r[0])
	}
	return nil
}

func (s *Sentinels) waitSettled(d time.Duration) error {
	ctx := context.Background()
	if err := s.WaitReplicas(ctx, s.Nodes[0].Addr, len(s.Nodes)-1, d); err != nil {
		return err
	}
	deadline := time.Now().Add(d)
	for _, a := range s.SentinelAddrs {
		sc := s.sentinelClient(a)
		for {
			m, err := sc.Master(ctx, s.MasterName).Result()
			if err == nil && m["num-slaves"] == strconv.Itoa(len(s.Nodes)-1) && m["num-other-sentinels"] == "2" &&
				!strings.Contains(m["flags"], "down") {
				break
			}
			if time.Now().After(deadline) {
				_ = sc.Close()
				return fmt.Errorf("sentinel %s sees %v (err %v); want %d replicas and 2 other sentinels", a, m, err, len(s.Nodes)-1)
			}
			time.Sleep(50 * time.Millisecond)
		}
		_ = sc.Close()
	}
	return nil
}

func (s *Sentinels) startSentinel(dir, master string) (string, *exec.Cmd, error) {
	host, port, _ := net.SplitHostPort(master)
	for attempt := 0; attempt < 5; attempt++ {
		p, err := freePort()
		if err != nil {
			return "", nil, err
		}
		// Sentinel rewrites its configuration file, so it gets one of its
		// own. Announcing 127.0.0.1 keeps every address it hands out on
		// loopback.
		conf := []string{
			"bind 127.0.0.1",
			"port " + strconv.Itoa(p),
			"dir " + dir,
			"logfile " + filepath.Join(dir, "sentinel.log"),
			"sentinel announce-ip 127.0.0.1",
			"sentinel resolve-hostnames no",
			fmt.Sprintf("sentinel monitor %s %s %s 2", s.MasterName, host, port),
			fmt.Sprintf("sentinel down-after-milliseconds %s %d", s.MasterName, downAfter.Milliseconds()),
			fmt.Sprintf("sentinel failover-timeout %s %d", s.MasterName, failoverTimeout.Milliseconds()),
			fmt.Sprintf("sentinel parallel-syncs %s 1", s.MasterName),
		}
		if s.opt.Password != "" {
			conf = append(conf, fmt.Sprintf("sentinel auth-pass %s %s", s.MasterName, s.opt.Password))
		}
		if s.opt.SentinelPassword != "" {
			conf = append(conf, "requirepass "+s.opt.SentinelPassword, "sentinel sentinel-pass "+s.opt.SentinelPassword)
		}
		file := filepath.Join(dir, "sentinel.conf")
		if err := os.WriteFile(file, []byte(strings.Join(conf, "\n")+"\n"), 0o600); err != nil {
			return "", nil, err
		}
		cmd, err := startProcess(file, "--sentinel")
		if err != nil {
			return "", nil, err
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(p))
		if waitReady(func(ctx context.Context) error {
			sc := s.sentinelClient(addr)
			defer sc.Close()
			return sc.Ping(ctx).Err()
		}, 10*time.Second) {
			return addr, cmd, nil
		}
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}
	log, _ := os.ReadFile(filepath.Join(dir, "sentinel.log"))
	return "", nil, fmt.Errorf("sentinel did not answer on loopback; its log:\n%s", log)
}

func (s *Sentinels) stopAll() {
	for _, c := range s.sentinels {
		_ = c.Process.Kill()
		_ = c.Wait()
	}
	s.sentinels = nil
	for _, n := range s.Nodes {
		n.Kill()
	}
}

// startNode starts one data node on a free port, with AUTH when args hold
// requirepass.
func startNode(dir string, args []string) (*Node, error) {
	pass := ""
	for i, a := range args {
		if a == "--requirepass" && i+1 < len(args) {
			pass = args[i+1]
		}
	}
	for attempt := 0; attempt < 5; attempt++ {
		p, err := freePort()
		if err != nil {
			return nil, err
		}
		n := &Node{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(p)), dir: dir, args: args}
		if err := n.start(pass); err == nil {
			return n, nil
		}
	}
	log, _ := os.ReadFile(filepath.Join(dir, "redis.log"))
	return nil, fmt.Errorf("redis-server did not answer on loopback; its log:\n%s", log)
}

func (n *Node) start(pass string) error {
	_, port, _ := net.SplitHostPort(n.Addr)
	argv := append([]string{
		"--bind", "127.0.0.1", "--port", port, "--dir", n.dir,
		"--save", "", "--appendonly", "no", "--logfile", filepath.Join(n.dir, "redis.log"),
		// A replica (re)joining syncs at once instead of after 5s.
		"--repl-diskless-sync-delay", "0",
	}, n.args...)
	cmd, err := startProcess(argv...)
	if err != nil {
		return err
	}
	if !waitReady(func(ctx context.Context) error {
		c := redis.NewClient(&redis.Options{Addr: n.Addr, Password: pass, MaxRetries: -1})
		defer c.Close()
		return c.Ping(ctx).Err()
	}, 10*time.Second) {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return errors.New("no answer")
	}
	n.cmd = cmd
	return nil
}

// Kill sends SIGKILL to the node, if it runs.
func (n *Node) Kill() {
	if n.cmd != nil && n.cmd.Process != nil {
		_ = n.cmd.Process.Kill()
		_ = n.cmd.Wait()
		n.cmd = nil
	}
}

// Restart starts a killed node again on its port, empty (the test nodes
// keep nothing on disk) and configured as it first was; the sentinels turn
// a returning old master into a replica of the new one.
func (s *Sentinels) Restart(n *Node) error {
	if n.cmd != nil {
		return fmt.Errorf("node %s still runs", n.Addr)
	}
	return n.start(s.opt.Password)
}

func startProcess(args ...string) (*exec.Cmd, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, fmt.Errorf("redis-server not on PATH (apt-get install redis-server)")
	}
	cmd := exec.Command(bin, args...)
	// The process dies with the test binary, even when it is killed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start redis-server: %w", err)
	}
	return cmd, nil
}

func waitReady(ping func(ctx context.Context) error, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		err := ping(ctx)
		cancel()
		if err == nil {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}
