package lab

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"

	"github.com/duetnet/duet/internal/store"
	"github.com/duetnet/duet/internal/store/bolt"
	"github.com/duetnet/duet/internal/store/etcd"
)

// The lab's store: one etcd, run by duetd --embed-etcd --etcd-only in its
// own namespace on the underlay, as a small cluster's control-plane host
// would run it. Every node's duetd and every plugin call reach it over the
// underlay; duetctl, in the host namespace, reaches it from inside the
// store namespace (netnsDial).

// startStore starts the lab's etcd and waits until it answers.
func startStore(ctx context.Context, binDir string, s State) (int, error) {
	logf, err := os.Create(filepath.Join(s.Datadir, "etcd.log"))
	if err != nil {
		return 0, err
	}
	defer logf.Close()
	cmd := exec.Command("ip", "netns", "exec", s.Store.NetNS, filepath.Join(binDir, "duetd"),
		"--embed-etcd", filepath.Join(s.Datadir, "etcd"), "--etcd-only",
		"--etcd-listen", strings.Join(s.EtcdEndpoints(), ","), "--http", "")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true} // outlives duetctl
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("starting the lab's etcd: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, err := openStore(s)
		if err == nil {
			st.Close()
			return cmd.Process.Pid, nil
		}
		select {
		case werr := <-exited:
			return 0, fmt.Errorf("the lab's etcd exited (%v): see %s", werr, filepath.Join(s.Datadir, "etcd.log"))
		case <-ctx.Done():
			return cmd.Process.Pid, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return cmd.Process.Pid, fmt.Errorf("the lab's etcd did not answer within 30s (%v): see %s", err, filepath.Join(s.Datadir, "etcd.log"))
		}
	}
}

// openStore opens the lab's etcd from this process, dialing from inside
// the store's namespace.
func openStore(s State) (*etcd.Store, error) {
	return etcd.Open(etcd.Config{Endpoints: s.EtcdEndpoints(), DialTimeout: time.Second,
		Dial: netnsDial("/var/run/netns/" + s.Store.NetNS)})
}

// netnsDial makes connections from inside the namespace at path: the
// socket is created while this goroutine's thread is in it, and keeps that
// namespace for its life.
func netnsDial(path string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		err := ns.WithNetNSPath(path, func(ns.NetNS) error {
			var err error
			c, err = (&net.Dialer{}).DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}
}

// NetnsDial makes connections from inside the namespace at path (see
// netnsDial), for the kube lab's probes.
func NetnsDial(path string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return netnsDial(path)
}

// OpenStore opens the datastore node's plugin uses, as duetctl sees it
// from the host: the lab's etcd (shared by every node) dialed from the
// store's namespace, or in the kube lab the node's own bolt file.
func OpenStore(s State, node string) (store.Store, error) {
	if _, err := s.Node(node); err != nil {
		return nil, err
	}
	if s.Kubernetes != nil {
		path := filepath.Join(s.Kubernetes.Root, "nodes", node, "lib", "duet.db")
		if _, err := os.Stat(path); err != nil {
			return nil, fmt.Errorf("node %s has no datastore yet at %s (%v): has duet's DaemonSet started on it?", node, path, err)
		}
		return bolt.Open(path, bolt.Options{})
	}
	return openStore(s)
}
