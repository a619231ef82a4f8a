// Package etcdwatch follows the store in etcd for duetd. Watch only
// signals "something under the prefix changed" (`etcdctl watch --prefix
// /duet/`), so a lost or merged signal costs latency, never correctness;
// Mirror keeps the nodes and blocks themselves in memory, listed once and
// then followed event by event, so the agent plans without reading etcd.
package etcdwatch

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Backoff bounds the wait between attempts while etcd is unreachable.
const (
	minBackoff = 200 * time.Millisecond
	maxBackoff = 10 * time.Second
)

// Watch signals on the returned channel whenever a key under prefix is
// put or deleted. Signals coalesce: the channel holds at most one, and a
// slow reader is never blocked on nor blocks the watch. Watch keeps
// (re)connecting until ctx ends, through etcd restarts and compactions.
// Whenever it starts watching afresh (at first, once etcd answers, and
// after a compaction) it signals once, since changes may have been missed:
// a reader whose last sync failed because etcd was down learns that it is
// back. The channel is never closed. tlsCfg secures https endpoints, as
// the store's own client does (nil: etcd's defaults, the system's CAs).
func Watch(ctx context.Context, endpoints []string, tlsCfg *tls.Config, prefix string, log *slog.Logger) <-chan struct{} {
	return WatchRelevant(ctx, endpoints, tlsCfg, prefix, nil, log)
}

// Event is one change under the prefix, as a relevance filter sees it:
// Key without the prefix, the value before (nil when the key is new) and
// after (nil when it was deleted).
type Event struct {
	Key             string
	Prev, Value     []byte
	Created, Delete bool
}

// WatchRelevant is Watch that signals only for changes relevant says
// matter (nil: all), so a reader is not woken by writes it would ignore,
// such as heartbeats.
func WatchRelevant(ctx context.Context, endpoints []string, tlsCfg *tls.Config, prefix string, relevant func(Event) bool, log *slog.Logger) <-chan struct{} {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	out := make(chan struct{}, 1)
	w := &watcher{endpoints: endpoints, tls: tlsCfg, prefix: prefix, relevant: relevant, log: log, out: out}
	go w.run(ctx)
	return out
}

type watcher struct {
	relevant  func(Event) bool
	endpoints []string
	tls       *tls.Config
	prefix    string
	log       *slog.Logger
	out       chan struct{}
}

func (w *watcher) signal() {
	select {
	case w.out <- struct{}{}:
	default: // one is already pending: it covers this change too
	}
}

func (w *watcher) run(ctx context.Context) {
	backoff := minBackoff
	wait := func() bool {
		t := time.NewTimer(backoff)
		defer t.Stop()
		backoff = min(2*backoff, maxBackoff)
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
			return true
		}
	}
	var cli *clientv3.Client
	defer func() {
		if cli != nil {
			cli.Close()
		}
	}()
	for cli == nil {
		var err error
		cli, err = clientv3.New(clientv3.Config{Endpoints: w.endpoints, TLS: w.tls, DialTimeout: 2 * time.Second, Logger: zap.NewNop(), Context: ctx})
		if err != nil {
			w.log.Warn("etcd watch: cannot make a client; retrying", "endpoints", w.endpoints, "err", err)
			if !wait() {
				return
			}
		}
	}
	// rev is the next revision to watch from: 0 until the first read.
	var rev int64
	for ctx.Err() == nil {
		if rev == 0 {
			// Start from a known revision, so that changes made while the
			// watch is being (re)established are delivered, not lost.
			rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			r, err := cli.Get(rctx, w.prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
			cancel()
			if err != nil {
				if ctx.Err() == nil {
					w.log.Warn("etcd watch: etcd unreachable; retrying (is etcd running at these endpoints?)", "endpoints", w.endpoints, "err", err)
				}
				if !wait() {
					return
				}
				continue
			}
			rev = r.Header.Revision + 1
			w.log.Debug("etcd watch: watching", "prefix", w.prefix, "revision", rev)
			w.signal()
		}
		next, err := w.watch(ctx, cli, rev)
		if ctx.Err() != nil {
			return
		}
		if errors.Is(err, rpctypes.ErrCompacted) {
			w.log.Debug("etcd watch: history compacted; watching from now", "revision", rev)
			rev = 0
			continue
		}
		if next > rev {
			backoff = minBackoff // it was working: retry soon
		}
		rev = next
		w.log.Debug("etcd watch: stream ended; watching again", "revision", rev, "err", err)
		if !wait() {
			return
		}
	}
}

// watch follows prefix from rev until the stream ends, signalling each
// change, and returns the revision to resume from.
func (w *watcher) watch(ctx context.Context, cli *clientv3.Client, rev int64) (int64, error) {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	opts := []clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithRev(rev), clientv3.WithProgressNotify()}
	if w.relevant != nil {
		opts = append(opts, clientv3.WithPrevKV())
	}
	for resp := range cli.Watch(wctx, w.prefix, opts...) {
		if err := resp.Err(); err != nil {
			if resp.CompactRevision != 0 {
				return rev, rpctypes.ErrCompacted
			}
			return rev, err
		}
		if len(resp.Events) > 0 {
			if w.matters(resp.Events) {
				w.signal()
			}
			rev = resp.Events[len(resp.Events)-1].Kv.ModRevision + 1
		} else if resp.Header.Revision >= rev {
			rev = resp.Header.Revision + 1 // progress notification
		}
	}
	return rev, ctx.Err()
}

// matters reports whether any of evs passes the relevance filter.
func (w *watcher) matters(evs []*clientv3.Event) bool {
	if w.relevant == nil {
		return true
	}
	for _, ev := range evs {
		e := Event{Key: strings.TrimPrefix(string(ev.Kv.Key), w.prefix), Created: ev.IsCreate(), Delete: ev.Type == clientv3.EventTypeDelete}
		if ev.PrevKv != nil {
			e.Prev = ev.PrevKv.Value
		}
		if !e.Delete {
			e.Value = ev.Kv.Value
		}
		if w.relevant(e) {
			return true
		}
	}
	return false
}
