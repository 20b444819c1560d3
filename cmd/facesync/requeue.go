package main

import (
	"context"
	"fmt"
	"time"

	"github.com/facesync/facesync/tasks"
	"github.com/facesync/facesync/worker"
)

// runRequeue runs archived tasks again now: one order's, or every one with
// a valid payload and an unfinished order (of one app). The fleet does the
// same by itself within FACESYNC_RECONCILE_INTERVAL for tasks archived in
// the last 72 h; an operator's requeue has no such limit and does not
// count toward the fleet's 3 revivals.
func (m *Main) runRequeue(ctx context.Context, args []string) error {
	fs := m.flags("requeue")
	appID, orderNo := orderFlags(fs)
	archived := fs.Bool("archived", false, "every archived task of an unfinished order (of --app-id, when given)")
	webhooks := fs.Bool("webhooks", false, "archived webhook deliveries")
	if err := m.parse(fs, args); err != nil {
		return err
	}
	var f worker.RequeueFilter
	switch {
	case *webhooks:
		if *archived || *orderNo != "" {
			return usageErr("--webhooks goes alone (or with --app-id)")
		}
		if *appID != "" && !tasks.ValidID(*appID) {
			return usageErr("--app-id: 1 to 32 characters of A-Z a-z 0-9 _ -")
		}
		return m.requeueWebhooks(ctx, *appID)
	case *archived:
		if *orderNo != "" {
			return usageErr("use --archived [--app-id A] or --app-id A --order-no O, not both")
		}
		if *appID != "" && !tasks.ValidID(*appID) {
			return usageErr("--app-id: 1 to 32 characters of A-Z a-z 0-9 _ -")
		}
		f.AppID = *appID
	default:
		if !tasks.ValidID(*appID) || !tasks.ValidID(*orderNo) {
			return usageErr("--app-id and --order-no are required (1 to 32 characters of A-Z a-z 0-9 _ -), or --archived")
		}
		f.AppID, f.OrderNo = *appID, *orderNo
	}
	_, rdb, err := m.redisConfig(ctx)
	if err != nil {
		return err
	}
	defer rdb.Close()
	n, err := worker.Requeue(ctx, rdb, f, func(r worker.Revival) {
		if r.Outcome == worker.OutcomeRequeued {
			fmt.Fprintf(m.Stdout, "requeued %s %s:%s (queue %s)\n", r.Type, r.AppID, r.OrderNo, r.Queue)
			return
		}
		fmt.Fprintf(m.Stdout, "left %s %s:%s (queue %s): %s\n", r.Type, r.AppID, r.OrderNo, r.Queue, r.Reason)
	})
	if err != nil {
		return infraErr(fmt.Errorf("%v (%d run again before it)", err, n))
	}
	if n == 0 {
		return noErr("nothing to run again")
	}
	word := "tasks"
	if n == 1 {
		word = "task"
	}
	fmt.Fprintf(m.Stdout, "%d %s run again\n", n, word)
	return nil
}

// requeueWebhooks runs archived webhook deliveries again (of appID, when
// given), each with a fresh FACESYNC_WEBHOOK_WAIT; a delivery whose event
// was delivered since, or whose order state is gone, is left.
func (m *Main) requeueWebhooks(ctx context.Context, appID string) error {
	_, rdb, err := m.redisConfig(ctx)
	if err != nil {
		return err
	}
	defer rdb.Close()
	n, err := worker.RequeueWebhooks(ctx, rdb, appID, time.Now(), func(r worker.WebhookRequeue) {
		if r.Ran {
			fmt.Fprintf(m.Stdout, "requeued %s %s (queue %s)\n", tasks.TypeDeliverWebhook, r.ID, tasks.QueueWebhook)
			return
		}
		fmt.Fprintf(m.Stdout, "left %s %s: %s\n", tasks.TypeDeliverWebhook, r.ID, r.Reason)
	})
	if err != nil {
		return infraErr(fmt.Errorf("%v (%d run again before it)", err, n))
	}
	if n == 0 {
		return noErr("no archived webhook delivery to run again")
	}
	fmt.Fprintf(m.Stdout, "%d webhook deliveries run again\n", n)
	return nil
}
