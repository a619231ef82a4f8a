// Package cluster keeps the node registry in the store: each node's name,
// its addresses of both families and how it routes. duetd registers its
// node and reads the others to compute routes; duetctl lists them.
package cluster

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/duetnet/duet/internal/store"
)

const nodesPrefix = "nodes/"

// NodesPrefix is where node records live in the store.
const NodesPrefix = nodesPrefix

// Node is one host of the cluster.
type Node struct {
	Name string `json:"name"`
	// Addrs are the node's underlay addresses, IPv6 first.
	Addrs []netip.Addr `json:"addrs"`
	// Routing is "direct", "vxlan" or "bgp".
	Routing string `json:"routing"`
	// Instance identifies the duetd process that registered the node, so
	// a second duetd claiming the same name is caught.
	Instance string `json:"instance"`
	// Heartbeat is when that process last refreshed the record.
	Heartbeat time.Time `json:"heartbeat"`
}

// Addr returns the node's first address of a's family.
func (n Node) Addr(like netip.Addr) (netip.Addr, bool) {
	for _, a := range n.Addrs {
		if a.Is4() == like.Is4() {
			return a, true
		}
	}
	return netip.Addr{}, false
}

// StaleAfter is how long a node's heartbeat may be old before another
// process may take over its name (a restarted duetd gets a new instance).
const StaleAfter = 30 * time.Second

// ErrDuplicateName means another live duetd has registered the same name.
type ErrDuplicateName struct{ Node Node }

func (e *ErrDuplicateName) Error() string {
	return fmt.Sprintf("node name %q is already registered by another duetd (instance %s, addresses %v, heartbeat %s ago): give each node a distinct --node-name, or stop the other one and wait %s",
		e.Node.Name, e.Node.Instance, e.Node.Addrs, time.Since(e.Node.Heartbeat).Round(time.Second), StaleAfter)
}

// HeartbeatEvery is how often an unchanged record is rewritten. Between
// rewrites Register writes nothing: with etcd every write wakes every
// node's watch, and a write per sync would have the nodes wake each other
// without end.
const HeartbeatEvery = StaleAfter / 6

// Register writes n, refusing a name that another live instance holds.
// An unchanged record whose heartbeat is younger than HeartbeatEvery is
// left as it is.
func Register(tx store.Tx, n Node, now time.Time) error {
	old, ok, err := Get(tx, n.Name)
	if err != nil {
		return err
	}
	if ok && old.Instance != n.Instance && now.Sub(old.Heartbeat) < StaleAfter {
		return &ErrDuplicateName{Node: old}
	}
	if ok && sameRecord(old, n) && now.Sub(old.Heartbeat) >= 0 && now.Sub(old.Heartbeat) < HeartbeatEvery {
		return nil
	}
	n.Heartbeat = now
	raw, err := json.Marshal(n)
	if err != nil {
		return err
	}
	return tx.Put(nodesPrefix+n.Name, raw)
}

// SameRecord reports whether a and b differ at most in their heartbeat:
// a rewrite that changes nothing another node routes by.
func SameRecord(a, b Node) bool { return sameRecord(a, b) }

func sameRecord(a, b Node) bool {
	return a.Name == b.Name && a.Routing == b.Routing && a.Instance == b.Instance && slices.Equal(a.Addrs, b.Addrs)
}

// Get returns one node.
func Get(tx store.Tx, name string) (Node, bool, error) {
	raw, ok, err := tx.Get(nodesPrefix + name)
	if err != nil || !ok {
		return Node{}, false, err
	}
	var n Node
	if err := json.Unmarshal(raw, &n); err != nil {
		return Node{}, false, fmt.Errorf("store key %s%s is corrupt: %w", nodesPrefix, name, err)
	}
	return n, true, nil
}

// List returns every node, by name.
func List(tx store.Tx) ([]Node, error) {
	kvs, err := tx.List(nodesPrefix)
	if err != nil {
		return nil, err
	}
	out := make([]Node, 0, len(kvs))
	for _, kv := range kvs {
		var n Node
		if err := json.Unmarshal(kv.Value, &n); err != nil {
			return nil, fmt.Errorf("store key %s is corrupt: %w", kv.Key, err)
		}
		out = append(out, n)
	}
	return out, nil
}

// Remove deletes the record of a node that is gone. A node whose duetd is
// still heartbeating is refused unless force: it would register again at
// once, and its pods' blocks would be handed to others.
func Remove(tx store.Tx, name string, now time.Time, force bool) error {
	n, ok, err := Get(tx, name)
	if err != nil || !ok {
		return err
	}
	if age := now.Sub(n.Heartbeat); !force && age < StaleAfter {
		return fmt.Errorf("node %q is alive (its duetd wrote a heartbeat %s ago, instance %s): stop its duetd first, or use --force", name, age.Round(time.Second), n.Instance)
	}
	return tx.Delete(nodesPrefix + name)
}
