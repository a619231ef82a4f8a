package agent

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/duetnet/duet/internal/store"
)

// runCounting runs an agent whose every sync stops at opening the store,
// counting syncs; during each, onSync runs.
func runCounting(t *testing.T, trigger <-chan struct{}, onSync func()) *atomic.Int32 {
	t.Helper()
	var n atomic.Int32
	open := func() (store.Store, error) {
		n.Add(1)
		onSync()
		return nil, errors.New("no store in this test")
	}
	a := New(Config{Node: "a", Interval: time.Hour}, open, nil, nil, slog.New(slog.DiscardHandler)).WithTrigger(trigger)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = a.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return &n
}

func eventually(t *testing.T, n *atomic.Int32, want int32) {
	t.Helper()
	for deadline := time.Now().Add(2 * time.Second); n.Load() < want && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond) // and no more
	if got := n.Load(); got != want {
		t.Fatalf("%d syncs, want %d", got, want)
	}
}

func TestTriggerSyncsAtOnce(t *testing.T) {
	c := make(chan struct{}, 1)
	n := runCounting(t, c, func() {})
	eventually(t, n, 1) // the first sync, at start
	c <- struct{}{}
	eventually(t, n, 2)
	c <- struct{}{}
	eventually(t, n, 3)
}

// TestTriggerStorm: every sync causes another change (as a sync that
// writes would with etcd): one sync for the change, one more for what came
// during it, then a pause of maxCoolDown (the Interval being longer)
// between syncs instead of spinning. Once the storm is over, a change
// syncs at once again.
func TestTriggerStorm(t *testing.T) {
	c := make(chan struct{}, 1)
	var storm atomic.Bool
	storm.Store(true)
	n := runCounting(t, c, func() {
		if storm.Load() {
			select {
			case c <- struct{}{}:
			default:
			}
		}
	})
	eventually(t, n, 3) // the first sync, then the triggered one and its follow-up
	time.Sleep(maxCoolDown / 2)
	if got := n.Load(); got != 3 {
		t.Fatalf("%d syncs during the pause, want 3", got)
	}
	storm.Store(false)
	time.Sleep(maxCoolDown)
	if got := n.Load(); got != 4 {
		t.Fatalf("%d syncs after the pause, want 4", got)
	}
	c <- struct{}{}
	eventually(t, n, 5)
}
