// Package hostlock is the host-wide queue duet's stores put their writers
// in: a blocking flock(2) on a file. The kernel wakes a waiter as soon as
// the holder closes (no polling, so a burst of plugins runs back to back,
// in arrival order), and releases the lock when its holder dies, so a
// plugin killed with SIGKILL never leaves it held.
//
// bolt takes it around the whole database (bbolt's own lock polls every
// 50 ms). etcd takes it around each IPAM transaction of a host's plugins,
// as Calico's IPAM plugin does: pods starting together on one node all
// allocate from the node's blocks, and serialised on the node they commit
// one after the other instead of invalidating each other's optimistic
// transactions over and over.
package hostlock

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Lock is a held lock; Unlock releases it.
type Lock struct{ f *os.File }

// Acquire waits up to timeout for the lock on path (created, with its
// directory, if missing); shared takes it shared (readers), else
// exclusive. ok is false if the timeout passed first. A reader that may
// not create the file gets a Lock that holds nothing: it relies on the
// store's own consistency.
func Acquire(path string, shared bool, timeout time.Duration) (l *Lock, ok bool, err error) {
	if !shared {
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, false, err
		}
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		if shared && os.IsPermission(err) {
			return &Lock{}, true, nil
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
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case err := <-done:
		if err != nil {
			f.Close()
			return nil, false, fmt.Errorf("flock %s: %w", path, err)
		}
		return &Lock{f: f}, true, nil
	case <-timer.C:
		mu.Lock()
		defer mu.Unlock()
		select {
		case err := <-done: // got it just now
			if err == nil {
				return &Lock{f: f}, true, nil
			}
			f.Close()
			return nil, false, err
		default:
			abandoned = true
			return nil, false, nil
		}
	}
}

// Unlock releases the lock; calling it on nil is harmless.
func (l *Lock) Unlock() {
	if l != nil && l.f != nil {
		l.f.Close() // closing the last descriptor releases the flock
	}
}
