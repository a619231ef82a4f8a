package agent

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/duetnet/duet/internal/cluster"
	"github.com/duetnet/duet/internal/ipam"
	"github.com/duetnet/duet/internal/store"
)

// Desired is what one sync makes the node match, wherever it came from.
type Desired struct {
	// Self is this node as others route to it.
	Self cluster.Node
	// Nodes are every node, this one included.
	Nodes []cluster.Node
	// Blocks are every node's pod prefixes; their pools bound NDP proxy.
	Blocks []ipam.Block
	// Local are the addresses of this node's pods, for NDP proxy.
	Local []netip.Addr
	// NoNAT are pod prefixes that traffic from pods is never masqueraded
	// towards. Nil leaves that to the plugin, which adds its own pools.
	NoNAT []netip.Prefix
	// Released are this node's blocks the read gave back to their pools,
	// empty for Config.BlockReleaseAfter (already left out of Blocks).
	Released []netip.Prefix
	// RemovedNodes are nodes this read removed, silent for
	// Config.NodeGoneAfter (already left out of Nodes and Blocks).
	RemovedNodes []string
}

// Source gives one sync its desired state. The store and the Kubernetes
// API are the two; the planners and reconcilers after it are the same.
type Source interface {
	Desired(ctx context.Context) (Desired, error)
}

// storeSource is the cluster store: register this node (its own key
// only), then read every node and block in one snapshot, and give back
// this node's blocks that stayed empty long enough. The read commits
// nothing, so it never conflicts with the plugins' allocations anywhere
// in the cluster, and it reads no allocation: a block carries its
// addresses, which is all routing and NDP proxy need.
type storeSource struct {
	cfg  Config
	open func() (store.Store, error)
	now  func() time.Time
	// empty is when each of this node's blocks was first seen empty in
	// the current run of emptiness; only Desired, one at a time, uses it.
	empty map[netip.Prefix]time.Time
	// silent is the first observation of each other node whose
	// heartbeat was older than NodeGoneAfter.
	silent map[string]observation
	// cache, if set, gives the nodes and blocks instead of a read of the
	// store (duetd's etcd mode: a watch keeps it).
	cache ClusterCache
}

// ClusterCache is the store's nodes and blocks as something following it
// holds them in memory (etcdwatch.Mirror, in duetd). ok is false until it
// has read them once; the agent then reads the store itself. It may lag
// the store by the watch's latency: every write the agent bases on it
// (releasing a block, removing a node) checks the store again in its own
// transaction.
type ClusterCache interface {
	Cluster() (nodes []cluster.Node, blocks []ipam.Block, ok bool)
}

// observation is a node's heartbeat as seen at a sync.
type observation struct {
	heartbeat, at time.Time
}

func (s *storeSource) Desired(ctx context.Context) (Desired, error) {
	d := Desired{Self: cluster.Node{Name: s.cfg.Node, Addrs: s.cfg.Addrs, Routing: s.cfg.Routing, Instance: s.cfg.Instance}}
	st, err := s.open()
	if err != nil {
		return Desired{}, err
	}
	defer st.Close()
	now := s.now()
	if err := st.Update(ctx, func(tx store.Tx) error { return cluster.Register(tx, d.Self, now) }); err != nil {
		return Desired{}, fmt.Errorf("registering this node: %w", err)
	}
	cached := false
	if s.cache != nil {
		d.Nodes, d.Blocks, cached = s.cache.Cluster()
	}
	if !cached {
		err = st.View(ctx, func(tx store.Tx) error {
			var err error
			if d.Nodes, err = cluster.List(tx); err != nil {
				return err
			}
			d.Blocks, err = ipam.Blocks(tx)
			return err
		})
		if err != nil {
			return Desired{}, fmt.Errorf("reading the store: %w", err)
		}
	}
	if d.Blocks, d.Released, err = s.releaseEmpty(ctx, st, d.Blocks, now); err != nil {
		return Desired{}, fmt.Errorf("releasing empty blocks: %w", err)
	}
	s.track(d.Blocks, now)
	d.Local = localAddrs(d.Blocks, d.Self.Name)
	if err := s.removeGone(ctx, st, &d, now); err != nil {
		return Desired{}, err
	}
	return d, nil
}

// removeGone removes the other nodes silent for NodeGoneAfter at two
// observations: their allocations and blocks (ipam.ReleaseNode, in
// bounded transactions), then their records. Each transaction first
// checks that the heartbeat is still the one observed, so a node that
// writes one meanwhile is left as it is.
func (s *storeSource) removeGone(ctx context.Context, st store.Store, d *Desired, now time.Time) error {
	if s.cfg.NodeGoneAfter <= 0 {
		return nil
	}
	seen := map[string]observation{}
	var gone []cluster.Node
	for _, n := range d.Nodes {
		if n.Name == s.cfg.Node || now.Sub(n.Heartbeat) < s.cfg.NodeGoneAfter {
			continue
		}
		first, ok := s.silent[n.Name]
		if !ok || !first.heartbeat.Equal(n.Heartbeat) {
			seen[n.Name] = observation{heartbeat: n.Heartbeat, at: now}
			continue
		}
		seen[n.Name] = first
		if now.Sub(first.at) >= cluster.HeartbeatEvery {
			gone = append(gone, n)
		}
	}
	s.silent = seen
	for _, n := range gone {
		stillGone := func(tx store.Tx) error {
			cur, ok, err := cluster.Get(tx, n.Name)
			if err != nil {
				return err
			}
			if ok && !cur.Heartbeat.Equal(n.Heartbeat) {
				return errCameBack
			}
			return nil
		}
		err := func() error {
			for {
				var freed int
				if err := st.Update(ctx, func(tx store.Tx) (err error) {
					if err := stillGone(tx); err != nil {
						return err
					}
					freed, err = ipam.ReleaseNode(tx, n.Name, 100)
					return err
				}); err != nil {
					return err
				}
				if freed == 0 {
					break
				}
			}
			return st.Update(ctx, func(tx store.Tx) error {
				if err := stillGone(tx); err != nil {
					return err
				}
				return cluster.Remove(tx, n.Name, now, false)
			})
		}()
		if errors.Is(err, errCameBack) {
			delete(s.silent, n.Name)
			continue
		}
		if err != nil {
			return fmt.Errorf("removing node %s, silent since %s: %w", n.Name, n.Heartbeat.Format(time.RFC3339), err)
		}
		delete(s.silent, n.Name)
		d.RemovedNodes = append(d.RemovedNodes, n.Name)
	}
	if len(d.RemovedNodes) > 0 {
		removed := map[string]bool{}
		for _, n := range d.RemovedNodes {
			removed[n] = true
		}
		d.Nodes = slices.DeleteFunc(d.Nodes, func(n cluster.Node) bool { return removed[n.Name] })
		d.Blocks = slices.DeleteFunc(d.Blocks, func(b ipam.Block) bool { return removed[b.Node] })
	}
	return nil
}

var errCameBack = errors.New("the node wrote a heartbeat again")

// releaseEmpty gives back, in tx, this node's blocks seen empty since at
// least BlockReleaseAfter ago, and returns the blocks left.
func (s *storeSource) releaseEmpty(ctx context.Context, st store.Store, blocks []ipam.Block, now time.Time) (kept []ipam.Block, released []netip.Prefix, err error) {
	if s.cfg.BlockReleaseAfter <= 0 {
		return blocks, nil, nil
	}
	var due []ipam.Block
	for _, b := range blocks {
		since, seen := s.empty[b.CIDR]
		if b.Node == s.cfg.Node && len(b.Allocs) == 0 && seen && now.Sub(since) >= s.cfg.BlockReleaseAfter {
			due = append(due, b)
		}
	}
	if len(due) == 0 {
		return blocks, nil, nil
	}
	// Each block is checked empty again in the transaction that drops it:
	// a pod may have taken an address since the read.
	err = st.Update(ctx, func(tx store.Tx) error {
		released = nil // the store may run this again
		for _, b := range due {
			ok, err := ipam.ReleaseBlockIfEmpty(tx, b.Node, b.CIDR)
			if err != nil {
				return err
			}
			if ok {
				released = append(released, b.CIDR)
			}
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	for _, b := range blocks {
		if !slices.Contains(released, b.CIDR) {
			kept = append(kept, b)
		}
	}
	return kept, released, nil
}

// track starts the clock of each of this node's blocks that is empty now
// and stops it for the rest, after a read committed.
func (s *storeSource) track(blocks []ipam.Block, now time.Time) {
	still := map[netip.Prefix]time.Time{}
	for _, b := range blocks {
		if b.Node != s.cfg.Node || len(b.Allocs) > 0 {
			continue
		}
		if since, ok := s.empty[b.CIDR]; ok {
			still[b.CIDR] = since
		} else {
			still[b.CIDR] = now
		}
	}
	s.empty = still
}

// localAddrs are the addresses in use in node's blocks: its pods' and
// its Docker containers'.
func localAddrs(blocks []ipam.Block, node string) []netip.Addr {
	var out []netip.Addr
	for _, b := range blocks {
		if b.Node == node {
			for a := range b.Allocs {
				out = append(out, a)
			}
		}
	}
	slices.SortFunc(out, func(a, b netip.Addr) int { return a.Compare(b) })
	return out
}

// ClusterView is a cluster whose nodes and pod prefixes live outside the
// store (the Kubernetes API: *kube.Cluster has it). It fails, saying why,
// while this node cannot be served.
type ClusterView interface {
	View() (self cluster.Node, nodes []cluster.Node, blocks []ipam.Block, err error)
}

// NewViewSource is the desired state of a ClusterView. Nothing is
// registered: the view already knows every node. The plugin on this node
// still records its pods in the node's own store, which open returns
// (opened per sync, so the plugin is never locked out for long), and
// only for their addresses (NDP proxy). Every node's pod prefixes are
// NoNAT, since the plugin knows only its own.
func NewViewSource(view ClusterView, routing string, open func() (store.Store, error)) Source {
	return viewSource{view: view, routing: routing, open: open}
}

type viewSource struct {
	view    ClusterView
	routing string
	open    func() (store.Store, error)
}

func (s viewSource) Desired(ctx context.Context) (Desired, error) {
	var d Desired
	var err error
	if d.Self, d.Nodes, d.Blocks, err = s.view.View(); err != nil {
		return Desired{}, err
	}
	// Every node routes the same way (one --routing for the cluster).
	d.Self.Routing = s.routing
	for i := range d.Nodes {
		d.Nodes[i].Routing = s.routing
	}
	d.NoNAT = []netip.Prefix{}
	for _, b := range d.Blocks {
		d.NoNAT = append(d.NoNAT, b.CIDR)
	}
	st, err := s.open()
	if err != nil {
		return Desired{}, fmt.Errorf("reading this node's pods: %w", err)
	}
	var allocs []ipam.Allocation
	err = st.View(ctx, func(tx store.Tx) error {
		var err error
		allocs, err = ipam.List(tx, "")
		return err
	})
	st.Close()
	if err != nil {
		return Desired{}, fmt.Errorf("reading this node's pods: %w", err)
	}
	d.Local = allocAddrs(allocs, d.Self.Name)
	return d, nil
}

// allocAddrs are the addresses of node's allocations (the Kubernetes
// mode's store is the node's own, so this reads only its pods).
func allocAddrs(allocs []ipam.Allocation, node string) []netip.Addr {
	var out []netip.Addr
	for _, al := range allocs {
		if al.Node == node {
			for _, ip := range al.IPs {
				out = append(out, ip.Address.Addr())
			}
		}
	}
	return out
}
