package etcd

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"sync/atomic"
	"testing"

	"github.com/duetnet/duet/internal/etcdserver"
	"github.com/duetnet/duet/internal/store/etcd/kvgrpc"
)

// transports are the two ways to reach etcd; tests of what differs between
// them (connecting, failing, committing) run on both.
var transports = []struct {
	name string
	open func(Config) (*Store, error)
}{
	{"gateway", Open},
	{"grpc", openGRPC},
}

// openGRPC is Open over etcd's gRPC client, as duetd does it.
func openGRPC(cfg Config) (*Store, error) {
	t, err := kvgrpc.Dial(cfg.Endpoints, cfg.DialTimeout, cfg.TLS, nil)
	if err != nil {
		return nil, err
	}
	return OpenTransport(cfg, t)
}

// startEtcd runs a real single-member etcd on 127.0.0.1 with a data dir
// under tb.TempDir(), stops it in cleanup, and returns its client URL. The
// server is linked into the test binary only.
func startEtcd(tb testing.TB) string {
	tb.Helper()
	endpoint, _ := startStoppableEtcd(tb)
	return endpoint
}

// startStoppableEtcd is startEtcd that also returns a stop function, for
// tests of a server that goes away; stopping twice is harmless.
func startStoppableEtcd(tb testing.TB) (string, func()) {
	tb.Helper()
	client := freeURL(tb)
	srv, err := etcdserver.Start(context.Background(), etcdserver.Config{Dir: tb.TempDir(), ListenClient: []url.URL{client}})
	if err != nil {
		tb.Fatalf("start embedded etcd: %v", err)
	}
	tb.Cleanup(srv.Close)
	return client.String(), srv.Close
}

// freeURL picks a port nothing listens on. Another process could take it
// before etcd binds it; that is rare enough for tests.
func freeURL(tb testing.TB) url.URL {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	return url.URL{Scheme: "http", Host: l.Addr().String()}
}

var prefixes atomic.Int64

// openFresh opens a Store (over the gateway, the plugin's transport) on
// endpoint under a namespace no other test uses, so tests can share one
// server; it closes the Store in cleanup.
func openFresh(tb testing.TB, endpoint string, cfg Config) *Store {
	tb.Helper()
	return openFreshWith(tb, Open, endpoint, cfg)
}

func openFreshWith(tb testing.TB, open func(Config) (*Store, error), endpoint string, cfg Config) *Store {
	tb.Helper()
	cfg.Endpoints = []string{endpoint}
	if cfg.Prefix == "" {
		cfg.Prefix = fmt.Sprintf("/test/%d/", prefixes.Add(1))
	}
	s, err := open(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = s.Close() })
	return s
}
