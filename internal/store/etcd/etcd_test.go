package etcd

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/duetnet/duet/internal/store"
	"github.com/duetnet/duet/internal/store/storetest"
)

func TestConformance(t *testing.T) {
	endpoint := startEtcd(t)
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			storetest.Run(t, func(t *testing.T) store.Store {
				s, err := tr.open(Config{Endpoints: []string{endpoint}, Prefix: fmt.Sprintf("/conformance/%s/", t.Name())})
				if err != nil {
					t.Fatal(err)
				}
				return s
			})
		})
	}
}

// TestConformanceMarker runs the suite with a smaller comparison budget, so
// that more of its Lists are guarded by the deletion marker instead of
// per-key comparisons (its largest write is 51 keys, within the budget).
func TestConformanceMarker(t *testing.T) {
	endpoint := startEtcd(t)
	storetest.Run(t, func(t *testing.T) store.Store {
		s, err := Open(Config{Endpoints: []string{endpoint}, Prefix: fmt.Sprintf("/marker/%s/", t.Name()), MaxTxnOps: 60})
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

func TestUnreachable(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) { testUnreachable(t, tr.open) })
	}
}

func testUnreachable(t *testing.T, open func(Config) (*Store, error)) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	endpoint := "http://" + l.Addr().String()
	l.Close() // a closed port: connection refused
	const timeout = 500 * time.Millisecond
	start := time.Now()
	s, err := open(Config{Endpoints: []string{endpoint}, DialTimeout: timeout})
	elapsed := time.Since(start)
	if err == nil {
		s.Close()
		t.Fatal("Open on a closed port succeeded")
	}
	if !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("error does not wrap store.ErrUnavailable: %v", err)
	}
	for _, want := range []string{endpoint, "etcd is running", "endpoints"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	if elapsed > timeout+time.Second {
		t.Errorf("Open took %s, want about %s", elapsed, timeout)
	}
	t.Logf("after %s: %v", elapsed.Round(time.Millisecond), err)
}

// TestServerGone checks that a store whose etcd disappears answers
// ErrUnavailable within RequestTimeout, for reads and for commits.
func TestServerGone(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) { testServerGone(t, tr.open) })
	}
}

func testServerGone(t *testing.T, open func(Config) (*Store, error)) {
	endpoint, stop := startStoppableEtcd(t)
	s := openFreshWith(t, open, endpoint, Config{RequestTimeout: 500 * time.Millisecond})
	ctx := context.Background()
	if err := s.Update(ctx, func(tx store.Tx) error { return tx.Put("k", []byte("v")) }); err != nil {
		t.Fatal(err)
	}
	stop()
	for name, fn := range map[string]func() error{
		"View":        func() error { return s.View(ctx, func(tx store.Tx) error { _, _, err := tx.Get("k"); return err }) },
		"BlindUpdate": func() error { return s.Update(ctx, func(tx store.Tx) error { return tx.Put("k", nil) }) },
	} {
		start := time.Now()
		err := fn()
		if !errors.Is(err, store.ErrUnavailable) {
			t.Errorf("%s with etcd stopped = %v, want store.ErrUnavailable", name, err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("%s took %s", name, d)
		}
	}
}

func TestEmptyKeyRejected(t *testing.T) {
	s := openFresh(t, startEtcd(t), Config{})
	err := s.Update(context.Background(), func(tx store.Tx) error { return tx.Put("", []byte("x")) })
	if err == nil {
		t.Fatal("Put of the empty key succeeded; it is the deletion marker")
	}
}
