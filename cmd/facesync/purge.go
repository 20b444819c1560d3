package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/user"
	"strconv"
	"strings"
	"time"

	"github.com/hibiken/asynq"
	"go.uber.org/zap"

	"github.com/facesync/facesync/cmd/facesync/audit"
	"github.com/facesync/facesync/storage"
	"github.com/facesync/facesync/tasks"
	"github.com/facesync/facesync/worker/orderstore"
)

// queueWebhook is the webhook deliveries' queue (the contract's name):
// their tasks carry the record, so a purge deletes them too.
const queueWebhook = "facesync_webhook"

// purgeQueues are the queues whose tasks of a purged order are deleted.
var purgeQueues = []string{tasks.QueueResult, tasks.QueueEvidence, queueWebhook}

// maxReceiptText is the longest reason or operator a receipt takes
// (storage.PutReceipt refuses longer ones).
const maxReceiptText = 1024

// purgeTaskWait bounds how long a purge waits for the order's running
// tasks to stop once cancelled; a purge that times out can be run again.
const purgeTaskWait = 30 * time.Second

// defaultOperator is the OS user name, or uid:N when it has none.
func defaultOperator() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username
	}
	return "uid:" + strconv.Itoa(os.Getuid())
}

type orderRef struct{ AppID, OrderNo string }

func (o orderRef) String() string { return o.AppID + ":" + o.OrderNo }

// runPurge runs `facesync purge`: for each
// order, the object-lock check, the purge marker, the order's tasks
// cancelled and deleted, its objects, its keys, and a deletion receipt.
func (m *Main) runPurge(ctx context.Context, args []string) error {
	fs := m.flags("purge")
	appID, orderNo := orderFlags(fs)
	file := fs.String("file", "", "file with one app_id,order_no per line")
	reason := fs.String("reason", "", "why the order is purged, kept in the receipt (required)")
	operator := fs.String("operator", "", "who purges, kept in the receipt and the audit line (default: the OS user)")
	bypass := fs.Bool("bypass-governance", false, "delete objects under GOVERNANCE retention")
	if err := m.parse(fs, args); err != nil {
		return err
	}
	if strings.TrimSpace(*reason) == "" {
		return usageErr("--reason is required: why the order is purged (kept in the receipt)")
	}
	if *operator == "" {
		*operator = defaultOperator()
	}
	// The receipt's limits, checked before anything is deleted.
	if len(*reason) > maxReceiptText || len(*operator) > maxReceiptText {
		return usageErr("--reason and --operator may be at most %d bytes each", maxReceiptText)
	}
	var orders []orderRef
	switch {
	case *file != "" && (*appID != "" || *orderNo != ""):
		return usageErr("use --file or --app-id/--order-no, not both")
	case *file != "":
		var err error
		if orders, err = m.readPurgeFile(*file); err != nil {
			return err
		}
	case !tasks.ValidID(*appID) || !tasks.ValidID(*orderNo):
		return usageErr("--app-id and --order-no (or --file) are required: 1 to 32 characters of A-Z a-z 0-9 _ -")
	default:
		orders = []orderRef{{*appID, *orderNo}}
	}
	c, sink, err := m.configSink(ctx)
	if err != nil {
		return err
	}
	if err := pingSink(ctx, sink); err != nil {
		return infraErr(err)
	}
	rdb, store, err := openStore(ctx, c)
	if err != nil {
		return err
	}
	defer rdb.Close()
	insp := asynq.NewInspectorFromRedisClient(rdb) // shares rdb: closed with it
	p := &purger{m: m, c: c, sink: sink, store: store, insp: insp, reason: *reason, operator: *operator, bypass: *bypass}

	var refused []string
	for i, o := range orders {
		err := p.purge(ctx, o)
		var le *storage.LockedError
		switch {
		case errors.As(err, &le):
			fmt.Fprintf(m.Stdout, "refused %s: %v\n", o, strings.TrimPrefix(err.Error(), "storage: "))
			refused = append(refused, o.String())
		case err != nil:
			return infraErr(fmt.Errorf("%s: %v (%d of %d orders done before it; run the purge again to finish)", o, err, i, len(orders)))
		}
	}
	switch {
	case len(refused) == 1 && len(orders) == 1:
		return noErr("order %s: nothing deleted: object lock keeps its evidence (reasons above)", refused[0])
	case len(refused) > 0:
		return noErr("%d of %d orders refused, nothing deleted for them (object lock; reasons above): %s", len(refused), len(orders), strings.Join(refused, ", "))
	}
	return nil
}

// readPurgeFile reads app_id,order_no lines; blank lines and # comments
// are skipped, and any bad line stops the purge before anything is
// deleted.
func (m *Main) readPurgeFile(path string) ([]orderRef, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, usageErr("%v", err)
	}
	defer f.Close()
	var out []orderRef
	bad := 0
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		a, o, ok := strings.Cut(line, ",")
		a, o = strings.TrimSpace(a), strings.TrimSpace(o)
		if !ok || !tasks.ValidID(a) || !tasks.ValidID(o) {
			fmt.Fprintf(m.Stderr, "%s:%d: want app_id,order_no (1 to 32 characters of A-Z a-z 0-9 _ - each)\n", path, n)
			bad++
			continue
		}
		out = append(out, orderRef{a, o})
	}
	if err := sc.Err(); err != nil {
		return nil, usageErr("%s: %v", path, err)
	}
	if bad > 0 {
		return nil, usageErr("%d bad lines in %s (reported above): nothing purged", bad, path)
	}
	if len(out) == 0 {
		return nil, usageErr("no order in %s", path)
	}
	return out, nil
}

// purger carries what every order's purge needs.
type purger struct {
	m        *Main
	c        *Config
	sink     *storage.S3
	store    *orderstore.Store
	insp     *asynq.Inspector
	reason   string
	operator string
	bypass   bool
}

// purge purges one order in the contract's order. A *storage.LockedError
// means nothing was deleted. Any other error may come half-way; running
// the purge again finishes it. Every object version deleted is listed in
// a receipt: a run that fails after deleting some writes a receipt of
// those before it returns.
func (p *purger) purge(ctx context.Context, o orderRef) error {
	if err := p.sink.PurgeCheck(ctx, o.AppID, o.OrderNo, p.bypass); err != nil {
		return err
	}
	if err := p.store.MarkPurged(ctx, o.AppID, o.OrderNo, time.Now()); err != nil {
		return err
	}
	ntasks, err := p.deleteTasks(ctx, o)
	if err != nil {
		return err
	}
	deleted, err := p.sink.PurgeObjects(ctx, o.AppID, o.OrderNo, p.bypass)
	if err == nil {
		err = p.store.Delete(ctx, o.AppID, o.OrderNo)
	}
	if err != nil {
		if len(deleted) > 0 {
			if key, rerr := p.receipt(ctx, o, deleted, ntasks, false); rerr != nil {
				err = errors.Join(err, rerr)
			} else {
				fmt.Fprintf(p.m.Stdout, "partial %s: %d object version(s) deleted before the error, receipt %s\n", o, len(deleted), key)
			}
		}
		return err
	}
	key, err := p.receipt(ctx, o, deleted, ntasks, true)
	if err != nil {
		return err
	}
	fmt.Fprintf(p.m.Stdout, "purged %s: %d object version(s), %d task(s), record and keys deleted; receipt %s\n", o, len(deleted), ntasks, key)
	return nil
}

// receipt writes the deletion receipt of what this run deleted, prints
// it and writes the audit line.
func (p *purger) receipt(ctx context.Context, o orderRef, deleted []storage.DeletedObject, ntasks int, complete bool) (string, error) {
	// Printed first: should the receipt fail to be written, the
	// operator still has the list of what was deleted.
	keys := make([]string, 0, len(deleted))
	for _, d := range deleted {
		fmt.Fprintf(p.m.Stdout, "  deleted %s (version %s, %d bytes, sha256 %s)\n", d.Key, d.VersionID, d.Size, orNone(d.SHA256))
		keys = append(keys, d.Key)
	}
	key, err := p.sink.PutReceipt(ctx, p.c.S3ReceiptPrefix, storage.Receipt{
		AppID: o.AppID, OrderNo: o.OrderNo, Reason: p.reason, Operator: p.operator, Objects: deleted,
	})
	if err != nil {
		err = fmt.Errorf("write the deletion receipt of the %d object version(s) listed above: %w", len(deleted), err)
		complete = false
	}
	// The deletion is logged even when its receipt could not be written.
	// The reason is the operator's free text and may name the person: it
	// stays in the receipt, out of the logs.
	_ = audit.Write(p.m.Stderr, audit.Event{
		Action: audit.ActionPurge, Actor: p.operator, AppID: o.AppID, OrderNo: o.OrderNo, Keys: keys,
		Fields: []zap.Field{zap.String("receipt", key), zap.Int("tasks", ntasks), zap.Bool("complete", complete)},
	})
	return key, err
}

func orNone(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

// taskRef is one task of the order in one queue.
type taskRef struct{ queue, id string }

// deleteTasks cancels the order's running tasks, waits until none is
// active (bounded by purgeTaskWait) and deletes its tasks of every type
// in every state, completed ones included. The marker is already set, so
// a task that starts meanwhile is archived at once by the worker and
// deleted here.
func (p *purger) deleteTasks(ctx context.Context, o orderRef) (int, error) {
	refs := p.findTasks(o)
	deadline := time.Now().Add(purgeTaskWait)
	cancelled := map[taskRef]bool{}
	n := 0
	for len(refs) > 0 {
		var active []taskRef
		for _, r := range refs {
			info, err := p.insp.GetTaskInfo(r.queue, r.id)
			if errors.Is(err, asynq.ErrTaskNotFound) || errors.Is(err, asynq.ErrQueueNotFound) {
				continue
			}
			if err != nil {
				return n, fmt.Errorf("task %s in queue %s: %w", r.id, r.queue, err)
			}
			if info.State == asynq.TaskStateActive {
				if !cancelled[r] {
					if err := p.insp.CancelProcessing(r.id); err != nil {
						return n, fmt.Errorf("cancel task %s: %w", r.id, err)
					}
					cancelled[r] = true
				}
				active = append(active, r)
				continue
			}
			switch err := p.insp.DeleteTask(r.queue, r.id); {
			case err == nil:
				n++
			case errors.Is(err, asynq.ErrTaskNotFound):
			default:
				active = append(active, r) // became active meanwhile: cancel it next round
			}
		}
		refs = active
		if len(refs) == 0 {
			break
		}
		if time.Now().After(deadline) {
			return n, fmt.Errorf("%d task(s) of the order still running %v after their cancellation (%s in %s): run the purge again", len(refs), purgeTaskWait, refs[0].id, refs[0].queue)
		}
		select {
		case <-ctx.Done():
			return n, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return n, nil
}

// findTasks lists the order's tasks in every purge queue and state: those
// with its task ID ({app_id}:{order_no}, or that followed by ":" and an
// event) and those whose payload names it (a partner may enqueue without
// a task ID). It reads every task of those queues: a purge is rare, and a
// task left behind would keep a copy of the record. A listing asynq cannot
// read (a task key evicted under it) does not stop a deletion request: it
// is reported, and the order's task ID is looked up all the same.
func (p *purger) findTasks(o orderRef) []taskRef {
	id := tasks.TaskID(o.AppID, o.OrderNo)
	seen := map[taskRef]bool{}
	var out []taskRef
	add := func(r taskRef) {
		if !seen[r] {
			seen[r] = true
			out = append(out, r)
		}
	}
	// The webhook deliveries' IDs name their event; found directly even
	// when a listing below fails.
	for _, ev := range []string{tasks.EventDecision, tasks.EventEvidence} {
		add(taskRef{tasks.QueueWebhook, tasks.WebhookID(o.AppID, o.OrderNo, ev)})
	}
	for _, q := range purgeQueues {
		add(taskRef{q, id})
		lists := []func(string, ...asynq.ListOption) ([]*asynq.TaskInfo, error){
			p.insp.ListActiveTasks, p.insp.ListPendingTasks, p.insp.ListScheduledTasks,
			p.insp.ListRetryTasks, p.insp.ListArchivedTasks, p.insp.ListCompletedTasks,
		}
		for _, list := range lists {
			for page := 1; ; page++ {
				infos, err := list(q, asynq.PageSize(500), asynq.Page(page))
				if errors.Is(err, asynq.ErrQueueNotFound) {
					break
				}
				if err != nil {
					fmt.Fprintf(p.m.Stdout, "warning %s: cannot list the tasks of queue %s (%v): only its task %s is looked up there\n", o, q, err, id)
					break
				}
				for _, info := range infos {
					if info.ID == id || strings.HasPrefix(info.ID, id+":") || payloadNames(info.Payload, o) {
						add(taskRef{q, info.ID})
					}
				}
				if len(infos) < 500 {
					break
				}
			}
		}
	}
	return out
}

// payloadNames reports whether a task payload names the order: app_id and
// order_no at its top (the fetch tasks) or in its record (a webhook
// delivery).
func payloadNames(payload []byte, o orderRef) bool {
	var v struct {
		AppID   string `json:"app_id"`
		OrderNo string `json:"order_no"`
		Record  *struct {
			AppID   string `json:"app_id"`
			OrderNo string `json:"order_no"`
		} `json:"record"`
	}
	if json.Unmarshal(payload, &v) != nil {
		return false
	}
	if v.AppID == o.AppID && v.OrderNo == o.OrderNo {
		return true
	}
	return v.Record != nil && v.Record.AppID == o.AppID && v.Record.OrderNo == o.OrderNo
}

// noEvidenceReason says why an order has no manifest, for `verify`: its
// purge marker, else its record naming a manifest no longer there, else
// the possibilities. Redis trouble leaves the possibilities.
func (m *Main) noEvidenceReason(ctx context.Context, c *Config, appID, orderNo string) string {
	const unknown = "its evidence is not stored: never stored, expired under the retention rule, or purged"
	rdb, store, err := openStore(ctx, c)
	if err != nil {
		return unknown
	}
	defer rdb.Close()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if purged, err := store.Purged(ctx, appID, orderNo); err == nil && purged {
		return "the order was purged (its deletion receipt is under " + c.S3ReceiptPrefix + appID + "/" + orderNo + "/)"
	}
	if rec, _, err := store.Get(ctx, appID, orderNo); err == nil && rec.Evidence.ManifestKey != "" {
		return "its evidence expired or was purged: the record lists " + rec.Evidence.ManifestKey + ", which is no longer stored"
	}
	return unknown
}
