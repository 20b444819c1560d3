package redisconn_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/facesync/facesync/ticketcache/ticketcachetest"
	"github.com/facesync/facesync/worker/redisconn"
)

// TestConfirmerWaitsForEveryLiveReplica: with two replicas a write is
// confirmed once both hold it; with one killed it is not confirmed until
// the sentinels mark that replica down, and then it is again, by the one
// left. A key that is not on the master is reported lost.
func TestConfirmerWaitsForEveryLiveReplica(t *testing.T) {
	t.Parallel()
	sn := ticketcachetest.StartSentinels(t, ticketcachetest.SentinelOptions{Replicas: 2})
	cfg, err := redisconn.Parse(sn.URL(0), "")
	if err != nil {
		t.Fatal(err)
	}
	rdb := cfg.NewClient()
	defer rdb.Close()
	k := cfg.NewConfirmer(rdb)
	defer k.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	if err := rdb.Set(ctx, "confirm-a", 1, 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := k.Confirm(ctx, 2*time.Second, "confirm-a"); err != nil {
		t.Fatalf("Confirm with both replicas up = %v, want nil", err)
	}
	if err := k.Confirm(ctx, time.Second, "confirm-never-written"); !errors.Is(err, redisconn.ErrLost) {
		t.Errorf("Confirm of a missing key = %v, want ErrLost", err)
	}

	sn.Nodes[2].Kill()
	time.Sleep(300 * time.Millisecond) // past the Confirmer's cached count
	if err := k.Confirm(ctx, 200*time.Millisecond, "confirm-a"); !errors.Is(err, redisconn.ErrNotReplicated) {
		t.Errorf("Confirm right after a replica died = %v, want ErrNotReplicated (the sentinels still count it)", err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := k.Confirm(ctx, 500*time.Millisecond, "confirm-a")
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Confirm with one replica left, marked down by the sentinels: %v, want nil within 30s", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
