package agent

import (
	"encoding/json"
	"strings"

	"github.com/duetnet/duet/internal/cluster"
	"github.com/duetnet/duet/internal/ipam"
)

// Relevant says whether a change to a store key (without the store's
// prefix; prev is nil for a new key, value nil for a deleted one) can
// change what the agent programs, so a watch wakes it only for those:
// a node joining, leaving or changing its addresses or routing, and a
// block claimed or dropped. Allocations inside existing blocks move no
// route (and the plugin programs its own pod's proxy entry), and a node's
// heartbeat, rewritten every few seconds by every node, changes nothing:
// waking every agent for each would cost a full read per node per
// heartbeat for nothing. What this filters out, the agent's poll still
// sees.
func Relevant(key string, prev, value []byte) bool {
	switch {
	case strings.HasPrefix(key, ipam.ClaimsPrefix):
		return true
	case strings.HasPrefix(key, ipam.BlocksPrefix):
		return prev == nil || value == nil
	case strings.HasPrefix(key, cluster.NodesPrefix):
		if prev == nil || value == nil {
			return true
		}
		var a, b cluster.Node
		if json.Unmarshal(prev, &a) != nil || json.Unmarshal(value, &b) != nil {
			return true
		}
		return !cluster.SameRecord(a, b)
	}
	return false
}
