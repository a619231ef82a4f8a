// Command duetd is duet's node agent, one per host: it registers the node
// and its addresses, and routes every other node's pod blocks (and
// blackholes its own) from the desired state in the store. It serves
// /healthz and Prometheus /metrics over HTTP, and its status on a unix
// socket for duetctl. Stopping it leaves the dataplane intact.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/duetnet/duet/internal/agent"
	"github.com/duetnet/duet/internal/config"
	"github.com/duetnet/duet/internal/kernel"
	"github.com/duetnet/duet/internal/routing"
	"github.com/duetnet/duet/internal/store"
	"github.com/duetnet/duet/internal/store/open"
)

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
		node     = flag.String("node-name", host, "this node's name (unique in the cluster)")
		dbPath   = flag.String("datastore-path", config.DefaultBoltPath, "bolt datastore file (one host)")
		routingM = flag.String("routing", routing.Direct, "how to reach other nodes: direct (on-link peers) or vxlan (both families over one tunnel)")
		interval = flag.Duration("interval", time.Second, "how often to reconcile")
		sock     = flag.String("socket", "/run/duet/duetd.sock", "unix socket for duetctl")
		httpAddr = flag.String("http", "127.0.0.1:9641", "address for /healthz and /metrics (empty: off)")
		addrs    addrList
	)
	flag.Var(&addrs, "address", "this node's underlay address (repeat, or comma-separated; default: the global addresses of the default-route interfaces)")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := run(log, *node, *dbPath, *routingM, *interval, *sock, *httpAddr, addrs); err != nil {
		log.Error("duetd stopped", "err", err)
		os.Exit(1)
	}
}

func run(log *slog.Logger, node, dbPath, routingMode string, interval time.Duration, sock, httpAddr string, addrs []netip.Addr) error {
	if routingMode != routing.Direct && routingMode != routing.VXLAN {
		return fmt.Errorf("--routing %q: use %q or %q", routingMode, routing.Direct, routing.VXLAN)
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
	id := make([]byte, 8)
	_, _ = rand.Read(id)
	m := newMetrics()
	a := agent.New(agent.Config{Node: node, Addrs: addrs, Routing: routingMode, Interval: interval, Instance: hex.EncodeToString(id), UplinkMTU: mtu},
		func() (store.Store, error) {
			return open.Store(config.Datastore{Type: config.DatastoreBolt, Path: dbPath})
		},
		func() (agent.Kernel, func(), error) {
			ns, err := kernel.HostNS()
			if err != nil {
				return nil, nil, err
			}
			return ns, func() { ns.Close() }, nil
		}, m, log)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := serveSocket(ctx, sock, a); err != nil {
		return err
	}
	if httpAddr != "" {
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
		mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
			st := a.Status()
			if st.LastError != "" || time.Since(st.LastSync) > 5*interval+5*time.Second {
				http.Error(w, "unhealthy: "+st.LastError, http.StatusServiceUnavailable)
				return
			}
			fmt.Fprintln(w, "ok")
		})
		srv := &http.Server{Addr: httpAddr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		go func() {
			if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("http", "err", err)
			}
		}()
		defer srv.Close()
	}
	log.Info("duetd started", "node", node, "addresses", addrs, "routing", routingMode)
	return a.Run(ctx)
}

// serveSocket answers GET /status on a unix socket, for duetctl.
func serveSocket(ctx context.Context, path string, a *agent.Agent) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	_ = os.Remove(path)
	l, err := net.Listen("unix", path)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", path, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/status", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(a.Status())
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(l) }()
	go func() { <-ctx.Done(); srv.Close(); os.Remove(path) }()
	return nil
}

type metrics struct {
	reg      *prometheus.Registry
	syncs    *prometheus.CounterVec
	duration prometheus.Histogram
	changed  prometheus.Counter
	routes   prometheus.Gauge
}

func newMetrics() *metrics {
	m := &metrics{
		reg:      prometheus.NewRegistry(),
		syncs:    prometheus.NewCounterVec(prometheus.CounterOpts{Name: "duet_agent_syncs_total", Help: "Reconcile passes, by result."}, []string{"result"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "duet_agent_sync_seconds", Help: "Time of one reconcile pass.", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)}),
		changed:  prometheus.NewCounter(prometheus.CounterOpts{Name: "duet_agent_route_changes_total", Help: "Routes added, replaced or deleted."}),
		routes:   prometheus.NewGauge(prometheus.GaugeOpts{Name: "duet_agent_routes", Help: "Node routes this node holds (both families)."}),
	}
	m.reg.MustRegister(m.syncs, m.duration, m.changed, m.routes, prometheus.NewGoCollector())
	return m
}

func (m *metrics) Synced(d time.Duration, changed, routes int, err error) {
	res := "ok"
	if err != nil {
		res = "error"
	}
	m.syncs.WithLabelValues(res).Inc()
	m.duration.Observe(d.Seconds())
	m.changed.Add(float64(changed))
	m.routes.Set(float64(routes))
}
