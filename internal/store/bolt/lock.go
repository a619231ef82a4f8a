package bolt

import (
	"fmt"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// queueLock takes a blocking flock on path+".lock" before bbolt opens the
// database. bbolt's own lock polls every 50 ms, so 64 plugins started at
// once would wait in steps of 50 ms in no order; the kernel wakes blocked
// flock waiters as soon as the holder closes, which keeps the p99 of a
// burst of ADDs close to its p50.
type queueLock struct{ f *os.File }

func lockQueue(path string, shared bool, timeout time.Duration) (*queueLock, bool, error) {
	f, err := os.OpenFile(path+".lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		if shared && os.IsPermission(err) {
			return &queueLock{}, true, nil // a reader without write access relies on bbolt's lock alone
		}
		return nil, false, err
	}
	how := unix.LOCK_EX
	if shared {
		how = unix.LOCK_SH
	}
	var (
		mu        sync.Mutex
		abandoned bool
		done      = make(chan error, 1)
	)
	go func() {
		err := unix.Flock(int(f.Fd()), how)
		mu.Lock()
		defer mu.Unlock()
		if abandoned { // the caller gave up: let the next waiter in
			f.Close()
			return
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			f.Close()
			return nil, false, fmt.Errorf("flock %s.lock: %w", path, err)
		}
		return &queueLock{f: f}, true, nil
	case <-time.After(timeout):
		mu.Lock()
		defer mu.Unlock()
		select {
		case err := <-done: // got it just now
			if err == nil {
				return &queueLock{f: f}, true, nil
			}
			f.Close()
			return nil, false, err
		default:
			abandoned = true
			return nil, false, nil
		}
	}
}

func (l *queueLock) unlock() {
	if l != nil && l.f != nil {
		l.f.Close() // closing the last descriptor releases the flock
	}
}
