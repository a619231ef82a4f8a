// Package agent is duetd's control loop: read the cluster's desired state
// from a source (the store, where the node registers itself, or the
// Kubernetes API through a ClusterView), and reconcile the kernel's node
// routes, NDP proxy entries and, in Kubernetes mode, the no-masquerade
// sets to it, again and again. Stopping the agent leaves the dataplane as
// it is, so pods keep their connectivity while duetd restarts; the next
// start reconciles from the source without tearing anything down first.
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/duetnet/duet/internal/bgp"
	"github.com/duetnet/duet/internal/cluster"
	"github.com/duetnet/duet/internal/routing"
	"github.com/duetnet/duet/internal/store"
)

// Config is what the agent is told at start.
type Config struct {
	Node     string
	Addrs    []netip.Addr
	Routing  string
	Interval time.Duration
	Instance string
	// UplinkMTU sizes the VXLAN device (vxlan routing only).
	UplinkMTU int
	// MeshASN, when set with bgp routing, peers every other node in that
	// AS (a node-to-node iBGP mesh), following nodes as they register.
	MeshASN uint32
	// BlockReleaseAfter is how long one of this node's blocks must be
	// seen empty, sync after sync, before the node gives it back to its
	// pool (0: never). A node that churns pods keeps its blocks; one that
	// drained returns the space for other nodes.
	BlockReleaseAfter time.Duration
	// NodeGoneAfter is how long another node's heartbeat must be silent
	// before this node removes it with its blocks and addresses (0:
	// never). It takes two observations of the same old heartbeat, at
	// least cluster.HeartbeatEvery apart, and every removal transaction
	// checks the heartbeat again, so a node that comes back keeps all.
	NodeGoneAfter time.Duration
}

// GCMetrics is implemented by Metrics that count what the agent gave
// back: empty blocks, and nodes gone for good.
type GCMetrics interface {
	BlocksReleased(n int)
	NodesRemoved(n int)
}

// BGP is the routing mode where a speaker advertises the node's blocks to
// peers (real routers, or other nodes) and installs what they advertise.
const BGP = "bgp"

// Status is the agent's view after its last sync, served to duetctl.
type Status struct {
	Node      cluster.Node      `json:"node"`
	Nodes     []cluster.Node    `json:"nodes"`
	Routes    []string          `json:"routes"`
	Problems  []routing.Problem `json:"problems,omitempty"`
	LastSync  time.Time         `json:"lastSync"`
	LastError string            `json:"lastError,omitempty"`
	Changed   int               `json:"changedLastSync"`
	// Peers is the BGP sessions' state (bgp routing only).
	Peers []bgp.PeerStatus `json:"peers,omitempty"`
}

// Metrics is what the agent reports; the prometheus adapter in cmd/duetd
// implements it, tests use a no-op.
type Metrics interface {
	Synced(d time.Duration, changed int, routes int, err error)
}

// Kernel is what the agent programs: node routes, the VXLAN tunnel, and
// proxy entries; *kernel.NS implements it.
type Kernel interface {
	routing.TunnelKernel
	routing.ProxyKernel
}

// NoNATSets keeps exactly these pod prefixes in the firewall's "never
// masquerade towards these" sets, returning how many it wrote when it had
// to change them (0 when they already held them); cmd/duetd's nftables
// glue has it.
type NoNATSets interface {
	EnsureNoNAT(ctx context.Context, prefixes []netip.Prefix) (int, error)
}

// Agent runs the loop. Construct it with New or NewWithSource; Run
// starts it.
type Agent struct {
	cfg     Config
	source  Source
	kernel  func() (Kernel, func(), error)
	metrics Metrics
	log     *slog.Logger
	speaker Speaker
	trigger <-chan struct{}
	noNAT   NoNATSets
	synced  func(context.Context, Desired) error
	// lastFailure and lastLogged are Run's: see logResult.
	lastFailure string
	lastLogged  time.Time

	mu     sync.Mutex
	status Status
	// started is when this agent began and bgpSynced whether every peer
	// has since given its whole table (End-of-RIB): with BGP, routes are
	// not pruned before, for at most bgpDeferral, so a restarted duetd
	// does not cut established flows while its sessions come back (the
	// peers' side of it is graceful restart).
	started   time.Time
	bgpSynced bool
}

// bgpDeferral bounds the wait for End-of-RIB from every peer: RFC 4724's
// selection deferral timer, as long as the Restart Time duetd offers, so
// a peer that never comes back holds stale routes no longer than peers
// hold this node's.
const bgpDeferral = bgp.DefaultRestartTime

// New takes the agent's dependencies and starts nothing. open returns the
// store for one sync (bolt is opened and closed each time so the plugins
// are never locked out for long); kernel returns the namespace to program.
func New(cfg Config, open func() (store.Store, error), kernel func() (Kernel, func(), error), m Metrics, log *slog.Logger) *Agent {
	return NewWithSource(cfg, &storeSource{cfg: cfg, open: open, now: time.Now, empty: map[netip.Prefix]time.Time{}, silent: map[string]observation{}}, kernel, m, log)
}

// NewWithSource is New with the desired state from src instead of the
// store (NewViewSource: the Kubernetes API).
func NewWithSource(cfg Config, src Source, kernel func() (Kernel, func(), error), m Metrics, log *slog.Logger) *Agent {
	if cfg.Interval <= 0 {
		cfg.Interval = time.Second
	}
	return &Agent{cfg: cfg, source: src, kernel: kernel, metrics: m, log: log, started: time.Now()}
}

// WithNoNAT has each sync put the source's NoNAT prefixes in the
// firewall's sets (Kubernetes mode).
func (a *Agent) WithNoNAT(s NoNATSets) *Agent { a.noNAT = s; return a }

// WithSynced runs fn after every sync that reconciled everything, with
// the state it reconciled; its error fails the sync. duetd writes the CNI
// configuration there, so the kubelet sees it only once the node's routes
// and NAT are in place.
func (a *Agent) WithSynced(fn func(context.Context, Desired) error) *Agent { a.synced = fn; return a }

// WithCache makes an agent made by New take the nodes and blocks from c
// (kept by a watch) instead of reading them from the store at each sync.
func (a *Agent) WithCache(c ClusterCache) *Agent {
	if s, ok := a.source.(*storeSource); ok {
		s.cache = c
	}
	return a
}

// WithSpeaker gives the agent a started BGP speaker (bgp routing).
func (a *Agent) WithSpeaker(s Speaker) *Agent { a.speaker = s; return a }

// WithTrigger makes the agent sync as soon as c signals, besides every
// Interval: duetd passes etcdwatch's channel, so a change in the store is
// acted on at once. c should coalesce (buffer one, never block).
func (a *Agent) WithTrigger(c <-chan struct{}) *Agent { a.trigger = c; return a }

// maxCoolDown bounds the pause between syncs while the store changes
// during every sync (a storm of writes); Interval, if shorter, is used.
const maxCoolDown = time.Second

// Status returns a copy of the last sync's status.
func (a *Agent) Status() Status {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.status
}

// Run syncs until ctx is done. The first sync's registration error (for
// example a duplicate node name) is returned at once.
func (a *Agent) Run(ctx context.Context) error {
	err := a.Sync(ctx)
	if err != nil {
		var dup *cluster.ErrDuplicateName
		if errors.As(err, &dup) {
			return err
		}
	}
	a.logResult(err)
	t := time.NewTicker(a.cfg.Interval)
	defer t.Stop()
	var learned <-chan struct{}
	if a.speaker != nil {
		learned = a.speaker.Changed() // peers' routes changed: sync now
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-learned:
		case <-a.trigger:
		}
		a.syncAndFollow(ctx)
	}
}

// repeatFailure is how often a failure that does not change is logged
// again: a node waiting for its pod ranges, or for an API server, would
// otherwise log the same line every Interval.
const repeatFailure = time.Minute

// logResult logs a failed sync when its message is new or repeatFailure
// has passed, and the first success after failures.
func (a *Agent) logResult(err error) {
	if err == nil {
		if a.lastFailure != "" {
			a.log.Info("sync succeeded again", "after", a.lastFailure)
			a.lastFailure = ""
		}
		return
	}
	if msg := err.Error(); msg != a.lastFailure || time.Since(a.lastLogged) >= repeatFailure {
		a.log.Warn("sync failed", "err", err)
		a.lastFailure, a.lastLogged = msg, time.Now()
	}
}

// syncAndFollow syncs, and again at once if the store changed during
// that sync (the trigger fired). If it changed during the follow-up too,
// the store is in a storm of writes: the agent keeps syncing, but pauses
// between syncs instead of spinning.
func (a *Agent) syncAndFollow(ctx context.Context) {
	coolDown := min(a.cfg.Interval, maxCoolDown)
	for followUps := 0; ; followUps++ {
		// This sync reads the store after every change signalled so far.
		select {
		case <-a.trigger:
		default:
		}
		a.logResult(a.Sync(ctx))
		select {
		case <-a.trigger: // changes during the sync
		default:
			return
		}
		if followUps >= 1 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(coolDown):
			}
		}
	}
}

// Sync runs one pass: read the desired state from the source, plan,
// reconcile; then the synced hook, if any.
func (a *Agent) Sync(ctx context.Context) (err error) {
	start := time.Now()
	changed, nroutes := 0, 0
	defer func() {
		if a.metrics != nil {
			a.metrics.Synced(time.Since(start), changed, nroutes, err)
		}
		a.mu.Lock()
		a.status.LastSync, a.status.Changed = time.Now(), changed
		a.status.LastError = ""
		if err != nil {
			a.status.LastError = err.Error()
		}
		a.mu.Unlock()
	}()
	d, err := a.source.Desired(ctx)
	if err != nil {
		return err
	}
	self, nodes, blocks := d.Self, d.Nodes, d.Blocks
	gm, _ := a.metrics.(GCMetrics)
	if len(d.Released) > 0 {
		a.log.Info("released empty blocks", "blocks", d.Released, "emptyFor", a.cfg.BlockReleaseAfter)
		if gm != nil {
			gm.BlocksReleased(len(d.Released))
		}
	}
	for _, n := range d.RemovedNodes {
		a.log.Info("removed a node gone for good, with its blocks and addresses", "node", n, "silentFor", a.cfg.NodeGoneAfter)
	}
	if gm != nil && len(d.RemovedNodes) > 0 {
		gm.NodesRemoved(len(d.RemovedNodes))
	}
	k, done, err := a.kernel()
	if err != nil {
		return err
	}
	defer done()
	var routes []routing.Route
	var problems []routing.Problem
	if a.cfg.Routing == BGP {
		if a.speaker == nil {
			return errors.New("bgp routing without a BGP speaker")
		}
		if a.cfg.MeshASN != 0 {
			if err := a.speaker.SetPeers(ctx, meshPeers(self.Name, a.cfg.MeshASN, nodes)); err != nil {
				return fmt.Errorf("bgp mesh: %w", err)
			}
		}
		if routes, err = planBGP(a.speaker, self.Name, self.Addrs, blocks); err != nil {
			return fmt.Errorf("bgp: %w", err)
		}
	} else if a.cfg.Routing == routing.VXLAN {
		if err := routing.ReconcileTunnel(k, self, nodes, a.cfg.UplinkMTU); err != nil {
			return fmt.Errorf("vxlan: %w", err)
		}
		routes, problems = routing.PlanVXLAN(self, nodes, blocks)
	} else {
		routes, problems = routing.Plan(self.Name, nodes, blocks, nil)
	}
	nroutes = len(routes)
	if a.cfg.Routing == BGP && !a.peersSynced() {
		changed, err = routing.ReconcileKeep(k, routes)
	} else {
		changed, err = routing.Reconcile(k, routes)
	}
	if err != nil {
		return err
	}
	// Pods whose addresses sit in an uplink's prefix: answer for them
	// there (the plugin adds these at ADD; this repairs and cleans up).
	pools := map[netip.Prefix]bool{}
	for _, b := range blocks {
		pools[b.Pool] = true
	}
	var poolList []netip.Prefix
	for p := range pools {
		poolList = append(poolList, p)
	}
	var n int
	n, err = routing.ReconcileProxy(k, poolList, d.Local)
	changed += n
	if err == nil && d.NoNAT != nil && a.noNAT != nil {
		n, err = a.noNAT.EnsureNoNAT(ctx, d.NoNAT)
		changed += n
		if err != nil {
			err = fmt.Errorf("keeping pod ranges out of masquerading: %w", err)
		}
	}
	if changed > 0 {
		a.log.Info("routes reconciled", "changed", changed, "routes", len(routes))
	}
	for _, p := range problems {
		a.log.Warn("cannot route", "node", p.Node, "problem", p.Msg)
	}
	a.mu.Lock()
	a.status.Node, a.status.Nodes, a.status.Problems = self, nodes, problems
	if a.speaker != nil {
		a.status.Peers = a.speaker.Peers()
	}
	a.status.Routes = a.status.Routes[:0]
	for _, r := range routes {
		a.status.Routes = append(a.status.Routes, r.String())
	}
	a.mu.Unlock()
	if err == nil && a.synced != nil {
		err = a.synced(ctx, d)
	}
	return err
}

// peersSynced reports whether the routes planned from BGP are complete:
// every peer sent End-of-RIB since this agent started, or bgpDeferral
// passed. Once true it stays true; a session that drops later is the
// peers' graceful restart to handle, not a reason to keep stale routes.
func (a *Agent) peersSynced() bool {
	if !a.bgpSynced && (a.speaker.Synced() || time.Since(a.started) >= bgpDeferral) {
		a.bgpSynced = true
		a.log.Info("bgp: every peer has given its table (End-of-RIB) or the deferral passed; routes from before this start are pruned now",
			"after", time.Since(a.started).Round(time.Millisecond))
	}
	return a.bgpSynced
}
