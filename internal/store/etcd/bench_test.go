package etcd

import (
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/duetnet/duet/internal/ipam"
	"github.com/duetnet/duet/internal/store"
	"github.com/duetnet/duet/internal/store/bolt"
)

const (
	benchClients = 16
	benchTotal   = 2000 // allocations per round, split over the clients
)

// BenchmarkAllocations16 measures IPAM allocation throughput with 16
// concurrent clients, each a different node (so each claims its own
// blocks), on etcd (16 connections, as 16 hosts would have) and, for
// reference, on bbolt (one process, 16 goroutines on one Store). It
// reports allocations/s, fn runs per allocation and duplicate addresses;
// nothing is asserted.
func BenchmarkAllocations16(b *testing.B) {
	for _, tr := range transports {
		b.Run("etcd-"+tr.name, func(b *testing.B) {
			endpoint := startEtcd(b)
			benchRounds(b, func(b *testing.B) []store.Store {
				prefix := fmt.Sprintf("/bench/%d/", prefixes.Add(1))
				stores := make([]store.Store, benchClients)
				for i := range stores {
					stores[i] = openFreshWith(b, tr.open, endpoint, Config{Prefix: prefix})
				}
				return stores
			})
		})
	}
	b.Run("bolt", func(b *testing.B) {
		benchRounds(b, func(b *testing.B) []store.Store {
			s, err := bolt.Open(filepath.Join(b.TempDir(), "duet.db"), bolt.Options{})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = s.Close() })
			stores := make([]store.Store, benchClients)
			for i := range stores {
				stores[i] = s
			}
			return stores
		})
	})
}

// benchRounds runs b.N rounds of benchTotal allocations, each on the fresh,
// empty stores open returns (one per client), and reports the totals.
func benchRounds(b *testing.B, open func(*testing.B) []store.Store) {
	pool, err := ipam.PoolSpec{CIDR: "fd00:bece:1::/48"}.Resolve("pools[0]")
	if err != nil {
		b.Fatal(err)
	}
	var elapsed time.Duration
	var runs, dups int64
	b.ResetTimer()
	for round := 0; round < b.N; round++ {
		b.StopTimer()
		stores := open(b)
		b.StartTimer()
		start := time.Now()
		addrs, r := allocateAll(b, stores, pool)
		elapsed += time.Since(start)
		b.StopTimer()
		runs += r
		dups += duplicates(b, stores[0], addrs)
		b.StartTimer()
	}
	total := float64(b.N * benchTotal)
	b.ReportMetric(total/elapsed.Seconds(), "allocs/s")
	b.ReportMetric(float64(runs)/total, "runs/alloc")
	b.ReportMetric(float64(dups), "dups")
}

// allocateAll has client i allocate benchTotal/benchClients addresses as
// node i, through ipam.Allocate in one Update each, and returns every
// address handed out and how often the Update functions ran.
func allocateAll(b testing.TB, stores []store.Store, pool ipam.Pool) ([]netip.Addr, int64) {
	var runs atomic.Int64
	got := make([][]netip.Addr, len(stores))
	var wg sync.WaitGroup
	for c, s := range stores {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < benchTotal/len(stores); i++ {
				req := ipam.Request{
					Handle:   ipam.Handle{Network: "bench", ContainerID: fmt.Sprintf("c%d-%d", c, i), IfName: "eth0"},
					Node:     fmt.Sprintf("node%d", c),
					Families: []ipam.Family{ipam.IPv6},
					Pools:    []ipam.Pool{pool},
				}
				var a ipam.Allocation
				err := s.Update(context.Background(), func(tx store.Tx) (err error) {
					runs.Add(1)
					a, err = ipam.Allocate(tx, req)
					return err
				})
				if err != nil {
					b.Error(err)
					return
				}
				for _, ip := range a.IPs {
					got[c] = append(got[c], ip.Address.Addr())
				}
			}
		}()
	}
	wg.Wait()
	var all []netip.Addr
	for _, g := range got {
		all = append(all, g...)
	}
	return all, runs.Load()
}

// duplicates counts addresses handed out twice, both in what the clients
// were told and in what the store holds, and any shortfall in either.
func duplicates(b testing.TB, s store.Store, handedOut []netip.Addr) int64 {
	var stored []ipam.Allocation
	err := s.View(context.Background(), func(tx store.Tx) (err error) {
		stored, err = ipam.List(tx, "bench")
		return err
	})
	if err != nil {
		b.Fatal(err)
	}
	var dups int64
	seen := map[netip.Addr]bool{}
	for _, a := range handedOut {
		if seen[a] {
			dups++
		}
		seen[a] = true
	}
	held := map[netip.Addr]bool{}
	for _, a := range stored {
		for _, ip := range a.IPs {
			if held[ip.Address.Addr()] {
				dups++
			}
			held[ip.Address.Addr()] = true
		}
	}
	if len(seen) != benchTotal || len(held) != benchTotal {
		b.Errorf("%d distinct addresses handed out, %d held in the store; want %d", len(seen), len(held), benchTotal)
	}
	return dups
}
