package kube

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestRunnerCoalesces: marks made while a call runs cost one more call,
// not one each, and calls never overlap.
func TestRunnerCoalesces(t *testing.T) {
	var calls, inFlight, overlapped atomic.Int32
	began := make(chan int32, 10)
	release := make(chan struct{})
	r := newRunner(func(context.Context) error {
		if inFlight.Add(1) > 1 {
			overlapped.Store(1)
		}
		defer inFlight.Add(-1)
		n := calls.Add(1)
		began <- n
		if n == 1 {
			<-release
		}
		return nil
	}, time.Millisecond, time.Second, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Loop(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	r.Mark()
	waitCall(t, began, 1)
	for range 100 {
		r.Mark()
	}
	close(release)
	waitCall(t, began, 2)
	// Settle: nothing was marked after the second call began.
	time.Sleep(50 * time.Millisecond)
	if n := calls.Load(); n != 2 {
		t.Errorf("%d calls for one mark and a burst of 100 during the first call, want 2", n)
	}
	if overlapped.Load() != 0 {
		t.Error("two calls in flight at once")
	}
	r.Mark()
	waitCall(t, began, 3)
}

// TestRunnerRetries: a failed call is retried without a new mark, after a
// backoff that grows, and the retries stop once a call succeeds.
func TestRunnerRetries(t *testing.T) {
	var calls atomic.Int32
	began := make(chan int32, 10)
	var mu sync.Mutex
	var waits []time.Duration
	r := newRunner(func(context.Context) error {
		n := calls.Add(1)
		began <- n
		if n <= 2 {
			return errors.New("nft: busy")
		}
		return nil
	}, time.Millisecond, time.Second, func(_ error, retry time.Duration) {
		mu.Lock()
		waits = append(waits, retry)
		mu.Unlock()
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Loop(ctx); close(done) }()
	r.Mark()
	for i := int32(1); i <= 3; i++ {
		waitCall(t, began, i)
	}
	cancel()
	<-done
	mu.Lock()
	defer mu.Unlock()
	if len(waits) != 2 || waits[0] != firstBackoff(time.Millisecond) || waits[1] != 2*waits[0] {
		t.Errorf("retry waits %v, want %v doubling", waits, firstBackoff(time.Millisecond))
	}
	if n := calls.Load(); n != 3 {
		t.Errorf("%d calls, want 3", n)
	}
}

// TestRunnerBackoffBounded: the backoff stops at its bound.
func TestRunnerBackoffBounded(t *testing.T) {
	got := make(chan time.Duration, 100)
	r := newRunner(func(context.Context) error { return errors.New("no") }, 0, 150*time.Millisecond, func(_ error, d time.Duration) { got <- d })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go r.Loop(ctx)
	r.Mark()
	for _, want := range []time.Duration{100 * time.Millisecond, 150 * time.Millisecond, 150 * time.Millisecond} {
		select {
		case d := <-got:
			if d != want {
				t.Errorf("backoff %s, want %s", d, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("no retry")
		}
	}
}

func waitCall(t *testing.T, began <-chan int32, n int32) {
	t.Helper()
	for {
		select {
		case got := <-began:
			if got >= n {
				return
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("call %d never came", n)
		}
	}
}
