package etcdwatch

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Mirror keeps, in memory, every key under some parts of the store,
// decoded, fed by watches: each part is listed once, then followed from
// the revision of that list, and listed again only when etcd has
// compacted the history the watch needed. A reader (duetd's agent) then
// plans from memory: no read of etcd per sync, however large the
// cluster, and a change reaches it as one event, not as a re-read of
// everything. It uses the client it is given, so one gRPC connection
// carries the store's transactions and the watches.
type Mirror struct {
	cli      *clientv3.Client
	prefix   string
	parts    []string
	decode   func(part, key string, value []byte) (any, error)
	relevant func(Event) bool
	log      *slog.Logger
	out      chan struct{}

	mu    sync.Mutex
	data  map[string]map[string]any // part -> key (without prefix) -> value
	ready map[string]bool
}

// NewMirror mirrors the keys under prefix+part for each part. decode
// turns a value into what Snapshot returns (a value it cannot decode is
// logged and left out); relevant (nil: all) says which changes signal
// Changed. Run starts it.
func NewMirror(cli *clientv3.Client, prefix string, parts []string, decode func(part, key string, value []byte) (any, error), relevant func(Event) bool, log *slog.Logger) *Mirror {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Mirror{cli: cli, prefix: prefix, parts: parts, decode: decode, relevant: relevant, log: log,
		out: make(chan struct{}, 1), data: map[string]map[string]any{}, ready: map[string]bool{}}
}

// Run follows every part until ctx ends, through etcd being down,
// restarting or compacting.
func (m *Mirror) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for _, p := range m.parts {
		wg.Go(func() { m.follow(ctx, p) })
	}
	wg.Wait()
}

// Changed signals (coalesced, one pending at most) after a relevant
// change, and whenever a part has been listed afresh.
func (m *Mirror) Changed() <-chan struct{} { return m.out }

// Snapshot returns a copy of one part, keyed by the key without the
// store's prefix; ok is false until every part has been listed once.
func (m *Mirror) Snapshot(part string) (map[string]any, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, p := range m.parts {
		if !m.ready[p] {
			return nil, false
		}
	}
	return maps.Clone(m.data[part]), true
}

func (m *Mirror) signal() {
	select {
	case m.out <- struct{}{}:
	default:
	}
}

func (m *Mirror) follow(ctx context.Context, part string) {
	var b backoff
	var rev int64 // the next revision to watch from; 0: list first
	for ctx.Err() == nil {
		if rev == 0 {
			var err error
			if rev, err = m.list(ctx, part); err != nil {
				if ctx.Err() == nil {
					m.log.Warn("etcd mirror: cannot list; retrying (is etcd running?)", "part", part, "err", err)
				}
				if !b.wait(ctx) {
					return
				}
				continue
			}
			b.reset()
			m.signal()
		}
		next, err := m.watch(ctx, part, rev)
		if ctx.Err() != nil {
			return
		}
		if errors.Is(err, rpctypes.ErrCompacted) {
			m.log.Info("etcd mirror: history compacted; listing again", "part", part, "revision", rev)
			rev = 0
			continue
		}
		if next > rev {
			b.reset() // it was working: retry soon
		}
		rev = next
		m.log.Debug("etcd mirror: stream ended; watching again", "part", part, "revision", rev, "err", err)
		if !b.wait(ctx) {
			return
		}
	}
}

// list reads the whole part and replaces the copy; it returns the
// revision to watch from.
func (m *Mirror) list(ctx context.Context, part string) (int64, error) {
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	r, err := m.cli.Get(rctx, m.prefix+part, clientv3.WithPrefix())
	if err != nil {
		return 0, err
	}
	fresh := make(map[string]any, len(r.Kvs))
	for _, kv := range r.Kvs {
		key := strings.TrimPrefix(string(kv.Key), m.prefix)
		if v, err := m.decode(part, key, kv.Value); err != nil {
			m.log.Warn("etcd mirror: undecodable value left out", "key", key, "err", err)
		} else {
			fresh[key] = v
		}
	}
	m.mu.Lock()
	m.data[part], m.ready[part] = fresh, true
	m.mu.Unlock()
	m.log.Debug("etcd mirror: listed", "part", part, "keys", len(fresh), "revision", r.Header.Revision)
	return r.Header.Revision + 1, nil
}

// watch applies the changes to part from rev until the stream ends and
// returns the revision to resume from.
func (m *Mirror) watch(ctx context.Context, part string, rev int64) (int64, error) {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	opts := []clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithRev(rev), clientv3.WithProgressNotify(), clientv3.WithPrevKV()}
	for resp := range m.cli.Watch(wctx, m.prefix+part, opts...) {
		if err := resp.Err(); err != nil {
			if resp.CompactRevision != 0 {
				return rev, rpctypes.ErrCompacted
			}
			return rev, err
		}
		if len(resp.Events) == 0 {
			if resp.Header.Revision >= rev {
				rev = resp.Header.Revision + 1 // progress notification
			}
			continue
		}
		signal := false
		m.mu.Lock()
		for _, ev := range resp.Events {
			e := Event{Key: strings.TrimPrefix(string(ev.Kv.Key), m.prefix), Created: ev.IsCreate(), Delete: ev.Type == clientv3.EventTypeDelete}
			if ev.PrevKv != nil {
				e.Prev = ev.PrevKv.Value
			}
			if e.Delete {
				delete(m.data[part], e.Key)
			} else {
				e.Value = ev.Kv.Value
				if v, err := m.decode(part, e.Key, e.Value); err != nil {
					m.log.Warn("etcd mirror: undecodable value left out", "key", e.Key, "err", err)
					delete(m.data[part], e.Key)
				} else {
					m.data[part][e.Key] = v
				}
			}
			signal = signal || m.relevant == nil || m.relevant(e)
		}
		m.mu.Unlock()
		if signal {
			m.signal()
		}
		rev = resp.Events[len(resp.Events)-1].Kv.ModRevision + 1
	}
	return rev, ctx.Err()
}
