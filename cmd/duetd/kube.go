package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"sigs.k8s.io/knftables"

	"github.com/duetnet/duet/internal/agent"
	"github.com/duetnet/duet/internal/config"
	"github.com/duetnet/duet/internal/firewall"
	"github.com/duetnet/duet/internal/ipam"
	"github.com/duetnet/duet/internal/kernel"
	"github.com/duetnet/duet/internal/kube"
	"github.com/duetnet/duet/internal/store"
	"github.com/duetnet/duet/internal/store/open"
)

// kubeFlags are the flags of Kubernetes mode.
type kubeFlags struct {
	enabled      bool
	kubeconfig   string
	families     string
	confDir      string
	confName     string
	cniDatastore string
	cleanup      bool
	policy       bool // --network-policy
	// fams is --families, parsed by check.
	fams []ipam.Family
}

func (f *kubeFlags) register(fs *flag.FlagSet) {
	fs.BoolVar(&f.enabled, "kubernetes", false, "take the desired state from the Kubernetes API (Node objects: addresses, spec.podCIDRs) instead of the store, and write the CNI configuration once this node is ready")
	fs.StringVar(&f.kubeconfig, "kubeconfig", "", "kubeconfig `FILE` for the API server (default: the pod's service account, as in the DaemonSet); with --kubernetes")
	fs.StringVar(&f.families, "families", "dual", "pod address families: dual, ipv6 or ipv4 (the node must have a spec.podCIDRs range of each); with --kubernetes")
	fs.StringVar(&f.confDir, "cni-conf-dir", "/etc/cni/net.d", "`DIR` the container runtime loads CNI configurations from; with --kubernetes")
	fs.StringVar(&f.confName, "cni-conf-name", "10-duet.conflist", "file name of duet's CNI configuration in --cni-conf-dir; with --kubernetes")
	fs.StringVar(&f.cniDatastore, "cni-datastore-path", "", "the bolt file as the plugin on the host sees it, written into the CNI configuration (default: --datastore-path); with --kubernetes")
	// Off by default: without a conflist the kubelet marks the node
	// NotReady and fails every pod sandbox, and a DaemonSet rolling update
	// or a crash would do that for the seconds duetd is down, although the
	// plugin allocates and wires pods without duetd.
	fs.BoolVar(&f.cleanup, "cni-conf-cleanup", false, "remove the CNI configuration when duetd exits (default: leave it, since the plugin works without duetd and a restart must not make the node NotReady); with --kubernetes")
	registerPolicyFlag(fs, &f.policy)
}

// kubeOnly are the flags that mean nothing without --kubernetes, and
// notWithKube those that Kubernetes mode replaces, with why.
var (
	kubeOnly    = []string{"kubeconfig", "families", "cni-conf-dir", "cni-conf-name", "cni-datastore-path", "cni-conf-cleanup", "network-policy"}
	notWithKube = map[string]string{
		"address":        "the node's addresses are its status.addresses of type InternalIP",
		"etcd-endpoints": "pod ranges come from spec.podCIDRs and each node's pods from its own bolt file (--datastore-path)",
		"embed-etcd":     "pod ranges come from spec.podCIDRs and each node's pods from its own bolt file (--datastore-path)",
		"etcd-only":      "a store host runs without --kubernetes",
	}
)

// check validates the flags; set holds the names given on the command
// line, dbPath is --datastore-path.
func (f *kubeFlags) check(set map[string]bool, dbPath string) error {
	if !f.enabled {
		for _, name := range kubeOnly {
			if set[name] {
				return fmt.Errorf("--%s is for Kubernetes mode: add --kubernetes, or remove it", name)
			}
		}
		return nil
	}
	for name, why := range notWithKube {
		if set[name] {
			return fmt.Errorf("--%s does not go with --kubernetes: %s; remove it", name, why)
		}
	}
	var err error
	if f.fams, err = kube.ParseFamilies(f.families); err != nil {
		return err
	}
	if f.confName == "" || strings.ContainsRune(f.confName, '/') || !strings.HasSuffix(f.confName, ".conflist") {
		return fmt.Errorf("--cni-conf-name %q: give a file name ending in .conflist (the runtime uses the first by name, hence the 10- prefix)", f.confName)
	}
	if f.cniDatastore == "" {
		f.cniDatastore = dbPath
	}
	if !filepath.IsAbs(f.cniDatastore) {
		return fmt.Errorf("--cni-datastore-path %q is relative: the plugin runs from the runtime's directory, so give an absolute path", f.cniDatastore)
	}
	return nil
}

// kubeNodeName is --node-name's default in Kubernetes mode: NODE_NAME,
// which the DaemonSet sets from spec.nodeName (the name the kubelet
// registered, which need not be the host name), else the host name.
func kubeNodeName(env, host string) string {
	if env != "" {
		return env
	}
	return host
}

func runKube(ctx context.Context, log *slog.Logger, o options, kf *kubeFlags) error {
	client, api, err := kube.Client(kf.kubeconfig)
	if err != nil {
		return err
	}
	nodes, err := kube.NewNodes(client, api, log)
	if err != nil {
		return err
	}
	mtu, err := kernel.DefaultRouteMTU()
	if err != nil {
		mtu = 1500
	}
	openStore := func() (store.Store, error) {
		return open.Store(config.Datastore{Type: config.DatastoreBolt, Path: o.dbPath})
	}
	conf := &cniConf{dir: kf.confDir, name: kf.confName, datastore: kf.cniDatastore, fams: kf.fams, log: log}
	view := kube.NewCluster(nodes, o.node, kf.fams, log)
	m := newMetrics()
	a := agent.NewWithSource(agent.Config{Node: o.node, Routing: o.routing, Interval: o.interval, UplinkMTU: mtu, MeshASN: o.meshASN},
		agent.NewViewSource(view, o.routing, openStore), hostKernel, m, log).
		WithTrigger(nodes.Changed()).
		WithNoNAT(&nftNoNAT{log: log}).
		WithSynced(conf.synced)
	// The router ID comes from the node's name unless --bgp-router-id
	// says otherwise: its addresses are not known before the API answers.
	stopBGP, err := startBGP(ctx, log, o, nil, a)
	if err != nil {
		return err
	}
	defer stopBGP()
	var pol *policyController // nil without --network-policy: /policy says so
	if kf.policy {
		if pol, err = startPolicy(ctx, log, client, o.node); err != nil {
			return err
		}
		defer pol.stop()
	}
	healthz := func() (int, string) {
		st := a.Status()
		return health(st, o.interval, conf.notReady(st))
	}
	readyz := func() (int, string) {
		code, msg := healthz()
		return ready(code, msg, pol.syncError())
	}
	stopServing, err := serve(ctx, log, o, a, m, healthz, readyz, pol.routes)
	if err != nil {
		return err
	}
	defer stopServing()
	if kf.cleanup {
		defer conf.remove()
	}
	ictx, cancel := context.WithCancel(ctx)
	defer nodes.Shutdown(time.Second) // after cancel: it waits for the informer to stop
	defer cancel()
	nodes.Start(ictx)
	nodes.WaitForSync(ctx, 2*time.Second) // if not, the agent says why and keeps trying
	log.Info("duetd started", "mode", "kubernetes", "node", o.node, "server", api.Host, "families", kf.families, "routing", o.routing, "network-policy", kf.policy,
		"datastore", o.dbPath, "cni-conf", filepath.Join(kf.confDir, kf.confName))
	return a.Run(ctx)
}

// cniConf writes the conflist after each full sync (agent.WithSynced):
// so only once the informer has synced, this node has a pod range of
// every family asked, and its routes and NAT sets are in place.
type cniConf struct {
	dir, name, datastore string
	fams                 []ipam.Family
	log                  *slog.Logger

	mu      sync.Mutex
	written bool
}

func (c *cniConf) synced(_ context.Context, d agent.Desired) error {
	var own []netip.Prefix
	for _, b := range d.Blocks {
		if b.Node == d.Self.Name {
			own = append(own, b.CIDR)
		}
	}
	data, err := kube.Conflist(kube.CNIConf{Node: d.Self.Name, Families: c.fams, PodCIDRs: own, DatastorePath: c.datastore})
	if err != nil {
		return err
	}
	wrote, err := kube.WriteFile(c.dir, c.name, data)
	if err != nil {
		return err
	}
	if wrote {
		c.log.Info("CNI configuration written: the node can run pods", "path", filepath.Join(c.dir, c.name), "pools", own)
	}
	c.mu.Lock()
	c.written = true
	c.mu.Unlock()
	return nil
}

// notReady is why the node is not ready yet, or "" once the conflist is
// written.
func (c *cniConf) notReady(st agent.Status) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.written:
		return ""
	case st.LastError != "":
		return st.LastError
	}
	return "starting: the first sync has not finished"
}

func (c *cniConf) remove() {
	path := filepath.Join(c.dir, c.name)
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		c.log.Warn("cannot remove the CNI configuration", "path", path, "err", err)
	}
}

// nftNoNAT keeps every node's pod ranges in the firewall's peer sets in
// the host's nftables (agent.NoNATSets).
type nftNoNAT struct {
	log *slog.Logger

	nft knftables.Interface // made once: knftables.New runs nft to check it works
}

var _ agent.NoNATSets = (*nftNoNAT)(nil)

func (n *nftNoNAT) EnsureNoNAT(ctx context.Context, prefixes []netip.Prefix) (int, error) {
	if n.nft == nil {
		nft, err := nftTable(firewall.Table)
		if err != nil {
			return 0, err
		}
		n.nft = nft
	}
	var have []string
	for _, name := range firewall.PeerPoolSets {
		els, err := n.nft.ListElements(ctx, "set", name)
		if err != nil && !knftables.IsNotFound(err) {
			return 0, fmt.Errorf("reading set inet %s %s: %w", firewall.Table, name, err)
		}
		for _, e := range els {
			have = append(have, strings.Join(e.Key, " . "))
		}
	}
	set, changed, err := firewall.PeerPools(have, prefixes)
	if err != nil || !changed {
		return 0, err
	}
	if err := kernel.NFTApply(firewall.PeerPoolsScript(set)); err != nil {
		return 0, err
	}
	n.log.Info("pod ranges kept out of masquerading", "ranges", set)
	return len(set), nil
}

// nftTable reads and writes one table of the host's nftables, in the
// inet family, through knftables (duetd's; the plugin renders its own
// scripts, package firewall).
func nftTable(table string) (knftables.Interface, error) {
	nft, err := knftables.New(knftables.InetFamily, table, knftables.NoObjectCommentEmulation)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", kernel.ErrNoNFTables, err)
	}
	return nft, nil
}
