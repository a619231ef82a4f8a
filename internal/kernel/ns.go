// Package kernel is where duet calls the Linux network stack: links,
// addresses, routes, neighbours, bridges, sysctls and nftables, each call
// aimed at one network namespace through a handle, never by leaving a
// thread switched. (The labs and tests also run ip and nft themselves, and
// enter namespaces to run probes.)
//
// Every other package works in net/netip types and calls this one, so the
// logic above it stays testable without root. Doc comments give the
// equivalent iproute2 command.
package kernel

import (
	"errors"
	"fmt"

	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// ErrNoNetNS is wrapped by OpenNS when the path does not exist or is not a
// network namespace, so callers can tell "the pod is gone" from an I/O
// failure.
var ErrNoNetNS = errors.New("no such network namespace")

// ErrNotFound is wrapped when a link, address, route or neighbour looked up
// by name or value does not exist.
var ErrNotFound = errors.New("not found")

// ErrExists is wrapped when a link to create already exists.
var ErrExists = errors.New("already exists")

// NS is an open network namespace: a netlink socket bound to it (routing
// only: duet's nftables calls open their own) and, for a
// namespace other than the caller's own, the file that names it (for
// sysctls, which must be written from inside).
type NS struct {
	path  string   // "" for the caller's (host) namespace
	netns ns.NetNS // nil for the caller's namespace
	h     netlinksafe.Handle
}

// OpenNS opens the network namespace at path (e.g. /var/run/netns/x or
// /proc/PID/ns/net). The error wraps ErrNoNetNS when path is missing or is
// not a namespace.
func OpenNS(path string) (*NS, error) {
	nsh, err := ns.GetNS(path)
	if err != nil {
		var notExist ns.NSPathNotExistErr
		var notNS ns.NSPathNotNSErr
		if errors.As(err, &notExist) || errors.As(err, &notNS) {
			return nil, fmt.Errorf("%w: %s: %v", ErrNoNetNS, path, err)
		}
		return nil, fmt.Errorf("open netns %s: %w", path, err)
	}
	h, err := netlinksafe.NewHandleAt(netns.NsHandle(nsh.Fd()), unix.NETLINK_ROUTE)
	if err != nil {
		nsh.Close()
		return nil, fmt.Errorf("netlink handle in %s: %w", path, err)
	}
	return &NS{path: path, netns: nsh, h: h}, nil
}

// HostNS opens the caller's own network namespace, the host's for a CNI
// plugin or duetd.
func HostNS() (*NS, error) {
	h, err := netlinksafe.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("netlink handle: %w", err)
	}
	return &NS{h: h}, nil
}

// Close releases the netlink socket and the namespace file.
func (n *NS) Close() error {
	n.h.Close()
	if n.netns != nil {
		return n.netns.Close()
	}
	return nil
}

// String names the namespace in errors: its path, or "host".
func (n *NS) String() string {
	if n.path == "" {
		return "host netns"
	}
	return "netns " + n.path
}

// do runs f inside the namespace (on a locked thread that ns.Do switches
// back), or directly for the caller's own namespace.
func (n *NS) do(f func() error) error {
	if n.netns == nil {
		return f()
	}
	return n.netns.Do(func(ns.NetNS) error { return f() })
}

// retry repeats a netlink dump interrupted by a concurrent change
// (NLM_F_DUMP_INTR), for the calls netlinksafe does not wrap on a handle.
func retry[T any](f func() (T, error)) (T, error) {
	var v T
	var err error
	for range 5 {
		v, err = f()
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			return v, err
		}
	}
	return v, err
}

// errorsIs reports whether err is any of targets.
func errorsIs(err error, targets ...error) bool {
	for _, t := range targets {
		if errors.Is(err, t) {
			return true
		}
	}
	return false
}
