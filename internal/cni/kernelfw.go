package cni

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/duetnet/duet/internal/firewall"
	"github.com/duetnet/duet/internal/kernel"
)

// LockDir holds the plugin's lock files, one per network namespace whose
// tables it changes.
const LockDir = "/run/duet"

func nftElements(els []firewall.RawElement) []kernel.NFTElement {
	out := make([]kernel.NFTElement, len(els))
	for i, e := range els {
		out[i] = kernel.NFTElement{Family: string(e.Family), Set: e.Set, Key: e.Key, KeyEnd: e.KeyEnd}
	}
	return out
}

func (kernelFirewall) List(sets []firewall.RawElement) ([]firewall.RawElement, error) {
	refs := make([]kernel.NFTSetRef, len(sets))
	for i, s := range sets {
		refs[i] = kernel.NFTSetRef{Family: string(s.Family), Set: s.Set}
	}
	els, err := kernel.NFTListElements(firewall.Table, refs)
	if err != nil {
		return nil, err
	}
	out := make([]firewall.RawElement, len(els))
	for i, e := range els {
		out[i] = firewall.RawElement{Family: firewall.Family(e.Family), Set: e.Set, Key: e.Key, KeyEnd: e.KeyEnd}
	}
	return out, nil
}

// Lock takes an exclusive flock on a file named after the calling
// thread's network namespace (the lab's nodes are namespaces of one
// machine, each with its own tables). The kernel drops it if the plugin
// dies.
func (kernelFirewall) Lock() (func(), error) {
	ns := nsName()
	if err := os.MkdirAll(LockDir, 0o700); err != nil {
		return nil, fmt.Errorf("creating %s for the firewall's lock: %w", LockDir, err)
	}
	path := filepath.Join(LockDir, "nft-"+ns+".lock")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening the firewall's lock: %w", err)
	}
	for {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("locking %s: %w", path, err)
	}
	return func() { f.Close() }, nil
}

func (kernelHost) Links() (map[string]bool, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, fmt.Errorf("listing the host's interfaces: %w", err)
	}
	out := make(map[string]bool, len(ifs))
	for _, i := range ifs {
		out[i.Name] = true
	}
	return out, nil
}

// QueueDir is where the calling thread's namespace's pending removals
// wait: one file per host interface name, holding its families.
func QueueDir() string { return queueDir() }

func queueDir() string {
	return filepath.Join(LockDir, "remove-"+nsName())
}

func nsName() string {
	ns := strings.NewReplacer(":", "-", "[", "", "]", "").Replace(CurrentNetNS())
	if ns == "" {
		ns = "net"
	}
	return ns
}

// Removal is a group commit, as databases do with their logs: each DEL
// writes its name into the queue, then waits for the lock; whoever gets
// it removes every queued pod in one kernel transaction. The kernel
// waits one RCU grace period per transaction that deletes set elements,
// under its nftables mutex, so sixteen DELs at once wait for two or
// three instead of sixteen.
func (f kernelFirewall) Removal(name, fams string, fn func(map[string]string) error) error {
	dir := queueDir()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("creating %s for the firewall's removal queue: %w", dir, err)
	}
	own := filepath.Join(dir, name)
	if err := os.WriteFile(own, []byte(fams), 0o600); err != nil {
		return fmt.Errorf("queueing the removal of %s: %w", name, err)
	}
	unlock, err := f.Lock()
	if err != nil {
		os.Remove(own)
		return err
	}
	defer unlock()
	if _, err := os.Stat(own); errors.Is(err, os.ErrNotExist) {
		return nil // removed with another caller's batch
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		os.Remove(own)
		return err
	}
	queued := map[string]string{name: fams}
	for _, e := range ents {
		if b, err := os.ReadFile(filepath.Join(dir, e.Name())); err == nil {
			queued[e.Name()] = string(b)
		}
	}
	if err := fn(queued); err != nil {
		os.Remove(own)
		return err
	}
	for n := range queued {
		os.Remove(filepath.Join(dir, n))
	}
	return nil
}

func (kernelFirewall) Dequeue(name string) {
	os.Remove(filepath.Join(queueDir(), name))
}
