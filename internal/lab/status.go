package lab

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"time"

	"github.com/duetnet/duet/internal/ipam"
	"github.com/duetnet/duet/internal/store"
)

// This file is how the lab talks to its duetd processes and decides that
// the cluster has converged.

// NodeStatus asks a node's duetd for its status.
func NodeStatus(s State, n Node) (map[string]any, error) {
	c := http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", s.NodeSocket(n.Name))
		}}}
	resp, err := c.Get("http://duetd/status")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var st map[string]any
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

// allEstablished says whether every peer in a status's "peers" is up.
func allEstablished(peers any) bool {
	list, _ := peers.([]any)
	if len(list) == 0 {
		return false
	}
	for _, p := range list {
		m, _ := p.(map[string]any)
		if fmt.Sprint(m["State"]) != "established" && fmt.Sprint(m["state"]) != "established" {
			return false
		}
	}
	return true
}

// countBlocks reads how many blocks the lab's store holds.
func countBlocks(s State) int {
	st, err := openStore(s)
	if err != nil {
		return -1
	}
	defer st.Close()
	n := -1
	_ = st.View(context.Background(), func(tx store.Tx) error {
		bs, err := ipam.Blocks(tx)
		if err == nil {
			n = len(bs)
		}
		return err
	})
	return n
}

// waitConverged waits until every duetd sees every node, has no
// problems, and routes every block in the store (its own as blackholes,
// the others' via their node or, with BGP, as learned from peers).
func waitConverged(ctx context.Context, s State, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		ok, why := true, ""
		blocks := countBlocks(s)
		if blocks < 0 {
			ok, why = false, "the lab's etcd does not answer"
		}
		for _, n := range s.Nodes {
			st, err := NodeStatus(s, n)
			if err != nil {
				ok, why = false, fmt.Sprintf("%s: duetd not answering: %v (see %s)", n.Name, err, filepath.Join(s.Datadir, n.Name+".log"))
				break
			}
			nodes, _ := st["nodes"].([]any)
			if len(nodes) != len(s.Nodes) || st["problems"] != nil || st["lastError"] != nil {
				ok, why = false, fmt.Sprintf("%s: sees %d of %d nodes, problems %v, error %v", n.Name, len(nodes), len(s.Nodes), st["problems"], st["lastError"])
				break
			}
			// With BGP, every block must have come back from the router:
			// own ones as blackholes, the others as learned routes.
			if s.Options.Routing == "bgp" && !allEstablished(st["peers"]) {
				ok, why = false, fmt.Sprintf("%s: BGP sessions not all established: %v", n.Name, st["peers"])
				break
			}
			if routes, _ := st["routes"].([]any); len(routes) < blocks {
				ok, why = false, fmt.Sprintf("%s: has %d routes of %d blocks; BGP peers %v", n.Name, len(routes), blocks, st["peers"])
				break
			}
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("routes did not converge within %s: %s", limit, why)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}
