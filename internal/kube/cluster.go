package kube

import (
	"log/slog"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"

	"github.com/duetnet/duet/internal/cluster"
	"github.com/duetnet/duet/internal/ipam"
)

// NodeLister is what Cluster reads; *Nodes has it, tests use a slice.
type NodeLister interface {
	Nodes() ([]*corev1.Node, error)
}

var _ NodeLister = (*Nodes)(nil)

// Cluster is one node's view of the cluster through the Node objects: the
// agent's desired state in Kubernetes mode.
type Cluster struct {
	nodes NodeLister
	self  string
	fams  []ipam.Family
	log   *slog.Logger

	mu       sync.Mutex
	problems string // the last problems logged, so each is logged once
}

// NewCluster is node self's view, keeping the pod ranges of fams.
func NewCluster(nodes NodeLister, self string, fams []ipam.Family, log *slog.Logger) *Cluster {
	return &Cluster{nodes: nodes, self: self, fams: fams, log: log}
}

// View returns this node, every node and every node's pod ranges as
// blocks, or why this node cannot be served yet.
func (c *Cluster) View() (cluster.Node, []cluster.Node, []ipam.Block, error) {
	objs, err := c.nodes.Nodes()
	if err != nil {
		return cluster.Node{}, nil, nil, err
	}
	st, err := Convert(objs, c.self, c.fams)
	if err != nil {
		return cluster.Node{}, nil, nil, err
	}
	if p := strings.Join(st.Problems, "; "); p != "" {
		c.mu.Lock()
		logIt := p != c.problems
		c.problems = p
		c.mu.Unlock()
		if logIt {
			c.log.Warn("skipping pod ranges of other nodes", "problems", p)
		}
	}
	return st.Self, st.Nodes, st.Blocks, nil
}
