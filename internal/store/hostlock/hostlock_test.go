package hostlock

import (
	"path/filepath"
	"testing"
	"time"
)

// A waiter in AcquireQueued stays while the lock changes hands (each of
// its holders counts itself in the file) and gives up when one holder
// keeps it for stall, or when max has passed. flock locks belong to open
// files, so holders and waiters can be in this one process.
func TestAcquireQueued(t *testing.T) {
	path := filepath.Join(t.TempDir(), "q.lock")
	hold := func() *Lock {
		t.Helper()
		l, ok, err := Acquire(path, false, time.Second)
		if err != nil || !ok {
			t.Fatalf("Acquire: ok %v, %v", ok, err)
		}
		return l
	}
	// movingQueue holds the lock and makes it look as if it changed hands
	// every step, the way a queue of short holders does, until the
	// returned stop, which also lets go.
	movingQueue := func(step time.Duration) (stop func()) {
		l := hold()
		quit, done := make(chan struct{}), make(chan struct{})
		go func() {
			defer close(done)
			for {
				select {
				case <-quit:
					return
				case <-time.After(step):
					bumpHolders(l.f)
				}
			}
		}()
		return func() { close(quit); <-done; l.Unlock() }
	}

	t.Run("one holder keeps it", func(t *testing.T) {
		l := hold()
		defer l.Unlock()
		if _, ok, err := AcquireQueued(path, 100*time.Millisecond, 10*time.Second); ok || err != nil {
			t.Fatalf("AcquireQueued behind a holder that never lets go: ok %v, %v; want a give-up", ok, err)
		}
	})

	t.Run("the queue moves", func(t *testing.T) {
		stop := movingQueue(40 * time.Millisecond)
		time.AfterFunc(600*time.Millisecond, stop)
		w, ok, err := AcquireQueued(path, 150*time.Millisecond, 10*time.Second)
		if !ok || err != nil {
			t.Fatalf("AcquireQueued behind a moving queue, four stalls long: ok %v, %v; want the lock", ok, err)
		}
		if before := readHolders(w.f); before == 0 {
			t.Errorf("the new holder did not count itself")
		}
		w.Unlock()
	})

	t.Run("max bounds the wait", func(t *testing.T) {
		defer movingQueue(20 * time.Millisecond)()
		if _, ok, err := AcquireQueued(path, 100*time.Millisecond, 300*time.Millisecond); ok || err != nil {
			t.Fatalf("AcquireQueued past max: ok %v, %v; want a give-up", ok, err)
		}
	})

	t.Run("a plain Acquire is not patient", func(t *testing.T) {
		defer movingQueue(20 * time.Millisecond)()
		if _, ok, err := Acquire(path, false, 100*time.Millisecond); ok || err != nil {
			t.Fatalf("Acquire past its timeout: ok %v, %v; want a give-up", ok, err)
		}
	})
}
