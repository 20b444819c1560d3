package redisconn_test

import (
	"context"
	"log"
	"os"
	"time"

	"github.com/hibiken/asynq"

	"github.com/facesync/facesync/worker/redisconn"
)

// One parsed configuration, one go-redis client shared with asynq, and an
// enqueue reported only once a replica has it.
func Example() {
	cfg, err := redisconn.Parse(os.Getenv(redisconn.EnvURL), os.Getenv(redisconn.EnvCAFile))
	if err != nil {
		log.Fatal(err) // one line naming the variable
	}
	cfg.PoolSize = 50 + 4 + 20 // decision and evidence concurrency, plus a margin
	ctx := context.Background()
	rdb, err := cfg.Connect(ctx, 5*time.Second)
	if err != nil {
		log.Fatal(err)
	}
	defer rdb.Close() // after every asynq server has shut down

	client := asynq.NewClientFromRedisClient(rdb)
	task := asynq.NewTask("faceid:fetch_result", []byte(`{}`), asynq.TaskID("app:order"), asynq.Queue("facesync_result"))
	if _, err := client.EnqueueContext(ctx, task); err != nil {
		log.Fatal(err)
	}
	if cfg.Sentinel() {
		if err := redisconn.WaitReplica(ctx, rdb, time.Second, redisconn.TaskKey("facesync_result", "app:order")); err != nil {
			log.Fatal(err) // not acknowledged: ErrNotReplicated or ErrLost, or a failover error
		}
	}
}
