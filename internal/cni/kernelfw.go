package cni

import (
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
		out[i] = kernel.NFTElement{Family: e.Family, Set: e.Set, Key: e.Key, KeyEnd: e.KeyEnd}
	}
	return out
}

func (kernelFirewall) List(sets []firewall.RawElement) ([]firewall.RawElement, error) {
	refs := make([]kernel.NFTSetRef, len(sets))
	for i, s := range sets {
		refs[i] = kernel.NFTSetRef{Family: s.Family, Set: s.Set}
	}
	els, err := kernel.NFTListElements(firewall.Table, refs)
	if err != nil {
		return nil, err
	}
	out := make([]firewall.RawElement, len(els))
	for i, e := range els {
		out[i] = firewall.RawElement{Family: e.Family, Set: e.Set, Key: e.Key, KeyEnd: e.KeyEnd}
	}
	return out, nil
}

// Lock takes an exclusive flock on a file named after the calling
// thread's network namespace (the lab's nodes are namespaces of one
// machine, each with its own tables). The kernel drops it if the plugin
// dies.
func (kernelFirewall) Lock() (func(), error) {
	ns := strings.NewReplacer(":", "-", "[", "", "]", "").Replace(CurrentNetNS())
	if ns == "" {
		ns = "net"
	}
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
