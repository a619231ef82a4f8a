package etcdserver

import (
	"context"
	"errors"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// freeURL is a client URL on a port of host that nothing listens on.
func freeURL(t *testing.T, host string) url.URL {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Skipf("no %s here: %v", host, err)
	}
	defer l.Close()
	return url.URL{Scheme: "http", Host: l.Addr().String()}
}

func start(t *testing.T, cfg Config) *Server {
	t.Helper()
	s, err := Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func client(t *testing.T, s *Server) *clientv3.Client {
	t.Helper()
	c, err := clientv3.New(clientv3.Config{Endpoints: s.Endpoints(), DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestRestartKeepsData starts a member on [::1] and on 127.0.0.1, writes,
// stops it and starts it again on the same directory: the data is there.
func TestRestartKeepsData(t *testing.T) {
	for _, host := range []string{"::1", "127.0.0.1"} {
		t.Run(host, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "etcd")
			u := freeURL(t, host)
			s := start(t, Config{Dir: dir, ListenClient: []url.URL{u}})
			if eps := s.Endpoints(); len(eps) != 1 || eps[0] != u.String() {
				t.Fatalf("endpoints %v, want [%s]", eps, u.String())
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := s.Health(ctx); err != nil {
				t.Fatalf("health: %v", err)
			}
			if _, err := client(t, s).Put(ctx, "/duet/k", "v1"); err != nil {
				t.Fatal(err)
			}
			s.Close()
			s.Close() // harmless
			s = start(t, Config{Dir: dir, ListenClient: []url.URL{u}})
			r, err := client(t, s).Get(ctx, "/duet/k")
			if err != nil {
				t.Fatal(err)
			}
			if len(r.Kvs) != 1 || string(r.Kvs[0].Value) != "v1" {
				t.Fatalf("after restart: %v", r.Kvs)
			}
		})
	}
}

func TestStartErrors(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Start(context.Background(), Config{Dir: filepath.Join(file, "etcd"), ListenClient: []url.URL{freeURL(t, "127.0.0.1")}}); !errors.Is(err, ErrDir) {
		t.Errorf("data dir under a file: %v, want ErrDir", err)
	}
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	u := url.URL{Scheme: "http", Host: taken.Addr().String()}
	if _, err := Start(context.Background(), Config{Dir: t.TempDir(), ListenClient: []url.URL{u}}); !errors.Is(err, ErrListen) {
		t.Errorf("port taken: %v, want ErrListen", err)
	}
}

func TestAdvertise(t *testing.T) {
	in := []url.URL{{Scheme: "http", Host: "[::]:2379"}, {Scheme: "http", Host: "0.0.0.0:2379"}, {Scheme: "http", Host: "[fd00::1]:2379"}}
	want := []string{"http://[::1]:2379", "http://127.0.0.1:2379", "http://[fd00::1]:2379"}
	for i, u := range advertise(in) {
		if u.String() != want[i] {
			t.Errorf("advertise(%s) = %s, want %s", in[i].String(), u.String(), want[i])
		}
	}
}
