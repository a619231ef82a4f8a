// Command duetd is duet's node agent, one per host: it registers the node
// and its addresses, and routes every other node's pod blocks (and
// blackholes its own) from the desired state in the store. It serves
// /healthz and Prometheus /metrics over HTTP, and its status on a unix
// socket for duetctl. Stopping it leaves the dataplane intact.
//
// The store is a bolt file on one host (--datastore-path), or etcd for a
// cluster (--etcd-endpoints). With etcd, duetd watches the store and
// reconciles as soon as anything changes, and still every --interval.
// --embed-etcd DIR runs a single-member etcd inside duetd (data in DIR,
// clients on --etcd-listen); with --etcd-only that is all it runs, which
// is how a lab or small cluster runs its store host:
//
//	duetd --embed-etcd /var/lib/duet/etcd --etcd-only --etcd-listen http://[fd00::1]:2379
//	duetd --etcd-endpoints http://[fd00::1]:2379        # on every node
//
// An etcd of your own over https takes --etcd-ca-file, and, when it asks
// clients for a certificate, --etcd-cert-file and --etcd-key-file: the
// same files as the plugin's datastore caFile, certFile and keyFile.
//
// With --kubernetes (from the DaemonSet in deploy/duet.yaml) the Node
// objects are the desired state instead: each node's InternalIP addresses
// and spec.podCIDRs. duetd routes every node's pod ranges, keeps them out
// of masquerading, and writes the CNI configuration (--cni-conf-dir,
// --cni-conf-name) once this node is ready; /healthz says why until then.
package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"hash/fnv"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/duetnet/duet/internal/agent"
	"github.com/duetnet/duet/internal/bgp"
	"github.com/duetnet/duet/internal/config"
	"github.com/duetnet/duet/internal/docker"
	"github.com/duetnet/duet/internal/kernel"
	"github.com/duetnet/duet/internal/routing"
	"github.com/duetnet/duet/internal/store"
	"github.com/duetnet/duet/internal/store/open"
)

// peerList is --bgp-peer ADDR/ASN, repeatable.
type peerList []bgp.Peer

func (l *peerList) String() string { return fmt.Sprint(*l) }
func (l *peerList) Set(s string) error {
	fields := strings.Split(s, ",")
	addr, asn, ok := strings.Cut(fields[0], "/")
	a, err := netip.ParseAddr(addr)
	n, err2 := strconv.ParseUint(asn, 10, 32)
	if !ok || err != nil || err2 != nil {
		return fmt.Errorf("%q: write a peer as ADDRESS/ASN[,password=P][,hold=90s][,multihop=TTL], like fd00::1/65000", s)
	}
	p := bgp.Peer{Addr: a, ASN: uint32(n)}
	for _, f := range fields[1:] {
		k, v, _ := strings.Cut(f, "=")
		switch k {
		case "password":
			p.Password = v
		case "hold":
			d, err := time.ParseDuration(v)
			if err != nil {
				return fmt.Errorf("%q: hold=%q is not a duration like 90s", s, v)
			}
			p.HoldTime = d
		case "multihop":
			ttl, err := strconv.ParseUint(v, 10, 8)
			if err != nil {
				return fmt.Errorf("%q: multihop=%q is not a TTL (1-255)", s, v)
			}
			p.Multihop = uint32(ttl)
		default:
			return fmt.Errorf("%q: unknown option %q: use password=, hold= or multihop=", s, k)
		}
	}
	*l = append(*l, p)
	return nil
}

type addrList []netip.Addr

func (l *addrList) String() string { return fmt.Sprint(*l) }
func (l *addrList) Set(s string) error {
	for _, f := range strings.Split(s, ",") {
		a, err := netip.ParseAddr(strings.TrimSpace(f))
		if err != nil {
			return fmt.Errorf("%q is not an address", f)
		}
		*l = append(*l, a)
	}
	return nil
}

func main() {
	host, _ := os.Hostname()
	var (
		node     = flag.String("node-name", host, "this node's name (unique in the cluster); with --kubernetes the default is env NODE_NAME, then the host name")
		dbPath   = flag.String("datastore-path", config.DefaultBoltPath, "bolt datastore file (one host)")
		routingM = flag.String("routing", routing.Direct, "how to reach other nodes: direct (on-link peers), vxlan (both families over one tunnel) or bgp (advertise blocks to --bgp-peer routers, install what they advertise)")
		release  = flag.Duration("block-release-after", 15*time.Minute, "give one of this node's address blocks back to its pool once it has been empty this long (0: never); a node that churns pods keeps its blocks")
		goneAftr = flag.Duration("node-gone-after", time.Hour, "remove another node, with its blocks and addresses, once its heartbeat has been silent this long at two observations (0: never; duetctl node remove does it by hand)")
		interval = flag.Duration("interval", time.Second, "how often to reconcile (with etcd, also at once whenever the store changes)")
		sock     = flag.String("socket", "/run/duet/duetd.sock", "unix socket for duetctl")
		httpAddr = flag.String("http", "127.0.0.1:9641", "address for /healthz and /metrics (empty: off)")
		addrs    addrList
		peers    peerList
		asn      = flag.Uint("bgp-asn", 0, "this node's AS number (bgp routing)")
		mesh     = flag.Bool("bgp-mesh", false, "peer every other registered node over iBGP in --bgp-asn (bgp routing)")
		rid      = flag.String("bgp-router-id", "", "BGP router ID, an IPv4 address (default: the node's IPv4 address, or one derived from its name)")
	)
	flag.Var(&peers, "bgp-peer", "a BGP peer as ADDRESS/ASN[,password=P][,hold=90s][,multihop=TTL] (repeat); bgp routing")
	flag.Var(&addrs, "address", "this node's underlay address (repeat, or comma-separated; default: the global addresses of the default-route interfaces)")
	var ef etcdFlags
	flag.StringVar(&ef.endpoints, "etcd-endpoints", "", "keep the store in etcd at these client `URLs` (comma-separated, like http://[fd00::1]:2379) instead of the bolt file; duetd syncs as soon as the store changes")
	flag.StringVar(&ef.embedDir, "embed-etcd", "", "run a single-member etcd inside duetd with its data in `DIR` (kept across restarts); the store is there unless --etcd-endpoints says otherwise")
	flag.Var(&ef.listen, "etcd-listen", "client `URL` the embedded etcd listens on (repeat, or comma-separated; default http://127.0.0.1:2379); with --embed-etcd")
	flag.BoolVar(&ef.only, "etcd-only", false, "run only the embedded etcd and /healthz: no agent, no node, nothing programmed (a store host); with --embed-etcd")
	flag.StringVar(&ef.caFile, "etcd-ca-file", "", "PEM `FILE` of the CA that signed etcd's certificate, for https --etcd-endpoints (default: the system's CAs)")
	flag.StringVar(&ef.certFile, "etcd-cert-file", "", "PEM `FILE` of this client's certificate, when etcd asks for one (etcd --client-cert-auth); with --etcd-key-file")
	flag.StringVar(&ef.keyFile, "etcd-key-file", "", "PEM `FILE` of the private key of --etcd-cert-file")
	flag.StringVar(&ef.logLevel, "etcd-log-level", "error", "the embedded etcd's own log level: debug, info, warn or error")
	var kf kubeFlags
	kf.register(flag.CommandLine)
	dockerOn := flag.Bool("docker", false, "also serve Docker Engine's network and IPAM driver protocols on /run/docker/plugins/NAME.sock (NAME from --docker-name): docker network create -d duet --ipam-driver duet --ipv6 NET")
	dockerSysctlLog := flag.String("docker-sysctl-log", config.DefaultSysctlLog, "with --docker: the file recording each host sysctl the driver changes, as the plugin's \"sysctlLog\"")
	dockerName := flag.String("docker-name", "duet", "the Docker driver name duetd serves with --docker (one per node when several nodes share one Docker Engine, as the lab's do)")
	flag.Usage = func() {
		fmt.Fprint(flag.CommandLine.Output(), `Usage: duetd [flags]

duetd is duet's node agent. Its store is a bolt file on one host
(--datastore-path), or etcd for a cluster (--etcd-endpoints, or an etcd
inside duetd with --embed-etcd; --etcd-only for a host that only runs it).
With --kubernetes the Kubernetes API's Node objects are the desired state
instead, and duetd writes the CNI configuration once the node is ready.

`)
		flag.PrintDefaults()
	}
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	set := map[string]bool{}
	flag.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if err := kf.check(set, *dbPath); err != nil {
		log.Error("bad flags", "err", err)
		os.Exit(2)
	}
	if kf.enabled && !set["node-name"] {
		*node = kubeNodeName(os.Getenv("NODE_NAME"), host)
	}
	ecfg, err := ef.check(set["datastore-path"])
	if err != nil {
		log.Error("bad flags", "err", err)
		os.Exit(2)
	}
	ef.cfg = ecfg
	var bgpCfg *bgp.Config
	if *routingM == agent.BGP {
		bgpCfg = &bgp.Config{ASN: uint32(*asn), Peers: peers, GracefulRestart: true}
		if *rid != "" {
			a, err := netip.ParseAddr(*rid)
			if err != nil {
				log.Error("--bgp-router-id is not an address", "value", *rid)
				os.Exit(2)
			}
			bgpCfg.RouterID = a
		}
	}
	var meshASN uint32
	if *mesh {
		meshASN = uint32(*asn)
	}
	o := options{node: *node, dbPath: *dbPath, routing: *routingM, interval: *interval, sock: *sock, httpAddr: *httpAddr,
		addrs: addrs, bgp: bgpCfg, meshASN: meshASN, blockRelease: *release, nodeGone: *goneAftr}
	if *dockerOn {
		if kf.enabled {
			log.Error("bad flags", "err", errors.New("--docker and --kubernetes do not mix: Kubernetes runs containers through CNI; run duetd --docker on Docker hosts"))
			os.Exit(2)
		}
		if *dockerName == "" || strings.ContainsAny(*dockerName, "/ ") {
			log.Error("bad flags", "err", fmt.Errorf("--docker-name %q: give a plain name such as duet", *dockerName))
			os.Exit(2)
		}
		o.docker, o.dockerSysctlLog = *dockerName, *dockerSysctlLog
	}
	if o.routing != routing.Direct && o.routing != routing.VXLAN && o.routing != agent.BGP {
		log.Error("bad flags", "err", fmt.Errorf("--routing %q: use %q, %q or %q", o.routing, routing.Direct, routing.VXLAN, agent.BGP))
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if kf.enabled {
		err = runKube(ctx, log, o, &kf)
	} else {
		err = run(ctx, log, o, &ef)
	}
	if err != nil {
		log.Error("duetd stopped", "err", err)
		stop()
		os.Exit(1)
	}
}

// options are the flags both modes share.
type options struct {
	node, dbPath, routing string
	interval              time.Duration
	blockRelease          time.Duration
	nodeGone              time.Duration
	sock, httpAddr        string
	addrs                 []netip.Addr
	bgp                   *bgp.Config
	meshASN               uint32
	// docker is the Docker driver name to serve ("" for none).
	docker, dockerSysctlLog string
}

func run(ctx context.Context, log *slog.Logger, o options, ef *etcdFlags) error {
	node, dbPath, routingMode, interval, addrs := o.node, o.dbPath, o.routing, o.interval, o.addrs
	ecfg := ef.cfg
	if ef.embedDir != "" {
		srv, err := startEmbedded(ctx, ef, log)
		if err != nil {
			return err
		}
		// Deferred first, so it runs last: after the agent, its store
		// and the BGP speaker are done with it.
		defer srv.Close()
		if ef.only {
			return runEtcdOnly(ctx, log, srv, o.httpAddr)
		}
		if len(ecfg.Endpoints) == 0 {
			ecfg.Endpoints = srv.Endpoints()
		}
	}
	mtu, err := kernel.DefaultRouteMTU()
	if err != nil {
		mtu = 1500
	}
	if len(addrs) == 0 {
		var err error
		if addrs, err = kernel.UplinkAddrs(); err != nil || len(addrs) == 0 {
			return fmt.Errorf("no underlay address found (%v): pass --address", err)
		}
	}
	openStore := func() (store.Store, error) {
		return open.Store(config.Datastore{Type: config.DatastoreBolt, Path: dbPath})
	}
	var changed <-chan struct{}
	var cache agent.ClusterCache
	if len(ecfg.Endpoints) > 0 {
		es, err := newEtcdStore(ecfg)
		if err != nil {
			return err
		}
		defer es.Close()
		if _, err := es.open(); errors.Is(err, store.ErrUnavailable) {
			log.Warn("etcd unreachable; each sync tries again", "err", err)
		} else if err != nil {
			return err
		}
		openStore = es.open
		mirror := es.mirror(log)
		go mirror.Run(ctx)
		changed, cache = mirror.Changed(), mirrorCache{mirror}
	}
	m := newMetrics()
	a := agent.New(agent.Config{Node: node, Addrs: addrs, Routing: routingMode, Interval: interval, Instance: instanceID(), UplinkMTU: mtu, MeshASN: o.meshASN, BlockReleaseAfter: o.blockRelease, NodeGoneAfter: o.nodeGone},
		openStore, hostKernel, m, log)
	if changed != nil {
		a.WithTrigger(changed).WithCache(cache)
	}
	stopBGP, err := startBGP(ctx, log, o, addrs, a)
	if err != nil {
		return err
	}
	defer stopBGP()
	stopServing, err := serve(ctx, log, o, a, m, func() (int, string) { return health(a.Status(), interval, "") }, nil)
	if err != nil {
		return err
	}
	defer stopServing()
	// On a Docker host, Docker's FORWARD policy (DROP) would drop what
	// duet's pods send through the host, CNI's and Docker's alike: accept
	// duet's interfaces in DOCKER-USER (nothing where there is none).
	if err := docker.EnsureForwarding(); err != nil {
		log.Warn("could not accept duet's interfaces in Docker's DOCKER-USER chain; Docker's FORWARD policy may drop pods' traffic", "err", err)
	}
	if o.docker != "" {
		stopDocker, err := serveDocker(ctx, log, o, openStore)
		if err != nil {
			return err
		}
		defer stopDocker()
	}
	datastore := "bolt " + dbPath
	if len(ecfg.Endpoints) > 0 {
		datastore = "etcd " + strings.Join(ecfg.Endpoints, ",")
	}
	log.Info("duetd started", "node", node, "addresses", addrs, "routing", routingMode, "datastore", datastore)
	return a.Run(ctx)
}

func hostKernel() (agent.Kernel, func(), error) {
	ns, err := kernel.HostNS()
	if err != nil {
		return nil, nil, err
	}
	return ns, func() { ns.Close() }, nil
}

// startBGP starts the speaker for bgp routing (a no-op otherwise); the
// returned func stops it the way a restart does (graceful restart): peers
// keep this node's routes until it is back.
func startBGP(ctx context.Context, log *slog.Logger, o options, addrs []netip.Addr, a *agent.Agent) (func(), error) {
	if o.bgp == nil {
		return func() {}, nil
	}
	cfg := *o.bgp
	if !cfg.RouterID.IsValid() {
		cfg.RouterID = routerID(o.node, addrs)
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("bgp: %w", err)
	}
	sp := bgp.New(cfg, log)
	if err := sp.Start(ctx); err != nil {
		return nil, fmt.Errorf("bgp: %w", err)
	}
	a.WithSpeaker(sp)
	return sp.Stop, nil
}

// instanceID identifies this host and network namespace, stably across
// restarts: a restarted duetd takes its node name back at once, while a
// duetd elsewhere claiming the same name is refused (cluster.Register).
func instanceID() string {
	machine, err := os.ReadFile("/etc/machine-id")
	if err != nil {
		h, _ := os.Hostname()
		machine = []byte(h)
	}
	netns, _ := os.Readlink("/proc/self/ns/net")
	sum := sha256.Sum256([]byte(strings.TrimSpace(string(machine)) + "/" + netns))
	return hex.EncodeToString(sum[:8])
}

// routerID is the node's IPv4 address, or on an IPv6-only node one made
// from its name in 240.0.0.0/4 (reserved, never on the wire as an
// address): a BGP identifier only has to be unique in the AS.
func routerID(node string, addrs []netip.Addr) netip.Addr {
	for _, a := range addrs {
		if a.Is4() {
			return a
		}
	}
	h := fnv.New32a()
	h.Write([]byte(node))
	v := h.Sum32()
	return netip.AddrFrom4([4]byte{240 | byte(v>>24)&0x0f, byte(v >> 16), byte(v >> 8), byte(v)})
}
