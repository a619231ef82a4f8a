// Package etcdwatch follows the store in etcd for duetd: Mirror keeps the
// nodes and blocks in memory, listed once and then followed event by
// event, so the agent plans without reading etcd, and signals the agent
// when a change can move a route (`etcdctl watch --prefix /duet/nodes/`,
// with the values kept).
package etcdwatch

import (
	"context"
	"time"
)

// Event is one change under the prefix, as a relevance filter sees it:
// Key without the prefix, the value before (nil when the key is new) and
// after (nil when it was deleted).
type Event struct {
	Key             string
	Prev, Value     []byte
	Created, Delete bool
}

// Backoff bounds the wait between attempts while etcd is unreachable.
const (
	minBackoff = 200 * time.Millisecond
	maxBackoff = 10 * time.Second
)

// backoff is the wait between attempts: doubling from minBackoff up to
// maxBackoff, back to minBackoff once an attempt made progress.
type backoff struct{ d time.Duration }

func (b *backoff) reset() { b.d = minBackoff }

// wait sleeps the current backoff and doubles it; false if ctx ended.
func (b *backoff) wait(ctx context.Context) bool {
	if b.d == 0 {
		b.d = minBackoff
	}
	t := time.NewTimer(b.d)
	defer t.Stop()
	b.d = min(2*b.d, maxBackoff)
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
