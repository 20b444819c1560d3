// Command asynqmon serves asynqmon v0.7.2's handler, the one its binary and
// its Docker image (hibiken/asynqmon:0.7.2) serve, built with the
// dependencies asynqmon pins (asynq v0.24.1), on a loopback address. It
// prints the address it listens on, then serves until killed.
//
// It is a module of its own so that facesync's module never requires
// asynqmon (which would pull asynq/x back in); the test in the folder above
// builds it.
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"time"

	"github.com/hibiken/asynq"
	"github.com/hibiken/asynqmon"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address")
	redisURL := flag.String("redis-url", "redis://127.0.0.1:6379/0", "Redis asynq uses")
	flag.Parse()
	opt, err := asynq.ParseRedisURI(*redisURL)
	if err != nil {
		log.Fatalf("--redis-url: %v", err)
	}
	h := asynqmon.New(asynqmon.Options{RedisConnOpt: opt})
	defer h.Close()
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(ln.Addr())
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	log.Fatal(srv.Serve(ln))
}
