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
	"encoding/binary"
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
	return acquire(path, shared, false, timeout, timeout)
}

// AcquireQueued waits for the exclusive lock on path for as long as the
// queue moves: it gives up (ok false) only when one holder has kept the
// lock for stall, or after max in all. A node starting many pods at once
// on few CPUs can queue a plugin behind dozens of short transactions for
// longer than any one of them may take (64 ADDs at once on 2 CPUs waited
// over 5 s); that wait is the queue working, not the store failing.
// Every holder through AcquireQueued counts itself in the file, which is
// how a waiter sees the lock change hands; Acquire's holders, whose
// waiters do not look, do not pay for the write.
func AcquireQueued(path string, stall, max time.Duration) (l *Lock, ok bool, err error) {
	return acquire(path, false, true, stall, max)
}

// acquire waits for the lock; with counted, each holder counts itself and
// the wait goes on past stall (up to max) while the count moves.
func acquire(path string, shared, counted bool, stall, max time.Duration) (l *Lock, ok bool, err error) {
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
	got := func(err error) (*Lock, bool, error) {
		if err != nil {
			f.Close()
			return nil, false, fmt.Errorf("flock %s: %w", path, err)
		}
		if counted {
			bumpHolders(f)
		}
		return &Lock{f: f}, true, nil
	}
	deadline := time.Now().Add(max)
	var holders uint64
	if counted {
		holders = readHolders(f)
	}
	timer := time.NewTimer(min(stall, max))
	defer timer.Stop()
	for {
		select {
		case err := <-done:
			return got(err)
		case <-timer.C:
			if left := time.Until(deadline); counted && left > 0 {
				if h := readHolders(f); h != holders { // the queue moved
					holders = h
					timer.Reset(min(stall, left))
					continue
				}
			}
			mu.Lock()
			defer mu.Unlock()
			select {
			case err := <-done: // got it just now
				return got(err)
			default:
				abandoned = true
				return nil, false, nil
			}
		}
	}
}

// readHolders is the count of AcquireQueued's holders so far in the lock
// file.
func readHolders(f *os.File) uint64 {
	var b [8]byte
	if n, _ := f.ReadAt(b[:], 0); n != len(b) {
		return 0
	}
	return binary.LittleEndian.Uint64(b[:])
}

// bumpHolders counts the caller, who holds the lock exclusively. It is a
// hint for waiters; failing to write it only makes them less patient.
func bumpHolders(f *os.File) {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], readHolders(f)+1)
	_, _ = f.WriteAt(b[:], 0)
}

// Unlock releases the lock; calling it on nil is harmless.
func (l *Lock) Unlock() {
	if l != nil && l.f != nil {
		l.f.Close() // closing the last descriptor releases the flock
	}
}
