package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/duetnet/duet/internal/agent"
)

// serve answers duetctl on the socket (/status, and what routes add)
// and, unless --http is empty, /healthz (from healthz, for liveness),
// /readyz (from readyz, for readiness; healthz when nil) and /metrics;
// the returned func stops HTTP.
func serve(ctx context.Context, log *slog.Logger, o options, a *agent.Agent, m *metrics, healthz, readyz func() (int, string), routes ...func(*http.ServeMux)) (func(), error) {
	if err := serveSocket(ctx, o.sock, a, routes...); err != nil {
		return nil, err
	}
	if o.httpAddr == "" {
		return func() {}, nil
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
	if readyz == nil {
		readyz = healthz
	}
	for path, probe := range map[string]func() (int, string){"/healthz": healthz, "/readyz": readyz} {
		mux.HandleFunc(path, func(w http.ResponseWriter, _ *http.Request) {
			code, msg := probe()
			if code != http.StatusOK {
				http.Error(w, msg, code)
				return
			}
			fmt.Fprintln(w, msg)
		})
	}
	return serveHTTP(o.httpAddr, mux, log), nil
}

// health is /healthz: healthy while syncs succeed and keep coming.
// notReady, when set, is why a Kubernetes node is not ready yet: 503 with
// that reason (the DaemonSet's probes read it) until the CNI
// configuration is written.
func health(st agent.Status, interval time.Duration, notReady string) (int, string) {
	if notReady != "" {
		return http.StatusServiceUnavailable, "not ready: " + notReady
	}
	if st.LastError != "" || time.Since(st.LastSync) > 5*interval+5*time.Second {
		return http.StatusServiceUnavailable, "unhealthy: " + st.LastError
	}
	return http.StatusOK, "ok"
}

// ready is /readyz in Kubernetes mode: /healthz's answer, and not ready
// while NetworkPolicy is not enforced (the last sync failed), so a node
// whose pods are not policed shows as a NotReady duet pod rather than
// only as a log line. Liveness stays on /healthz: restarting duetd does
// not mend a kernel that refuses the table.
func ready(code int, msg string, policyErr error) (int, string) {
	if code != http.StatusOK {
		return code, msg
	}
	if policyErr != nil {
		return http.StatusServiceUnavailable, "not ready: NetworkPolicy is not enforced on this node: " + policyErr.Error()
	}
	return code, msg
}

// serveSocket answers GET /status on a unix socket, for duetctl, and
// what routes add (GET /policy in Kubernetes mode).
func serveSocket(ctx context.Context, path string, a *agent.Agent, routes ...func(*http.ServeMux)) error {
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
	for _, add := range routes {
		add(mux)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(l) }()
	mine, _ := os.Stat(path)
	go func() {
		<-ctx.Done()
		srv.Close()
		// Remove the socket only if it is still ours: a new duetd started
		// during this one's shutdown has already put its own there.
		if now, err := os.Stat(path); err == nil && mine != nil && os.SameFile(mine, now) {
			os.Remove(path)
		}
	}()
	return nil
}

type metrics struct {
	reg      *prometheus.Registry
	syncs    *prometheus.CounterVec
	duration prometheus.Histogram
	changed  prometheus.Counter
	routes   prometheus.Gauge
	released prometheus.Counter
	removed  prometheus.Counter
}

func newMetrics() *metrics {
	m := &metrics{
		reg:      prometheus.NewRegistry(),
		syncs:    prometheus.NewCounterVec(prometheus.CounterOpts{Name: "duet_agent_syncs_total", Help: "Reconcile passes, by result."}, []string{"result"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "duet_agent_sync_seconds", Help: "Time of one reconcile pass.", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)}),
		changed:  prometheus.NewCounter(prometheus.CounterOpts{Name: "duet_agent_route_changes_total", Help: "Routes added, replaced or deleted."}),
		routes:   prometheus.NewGauge(prometheus.GaugeOpts{Name: "duet_agent_routes", Help: "Node routes this node holds (both families)."}),
		released: prometheus.NewCounter(prometheus.CounterOpts{Name: "duet_agent_blocks_released_total", Help: "This node's blocks given back to their pools after --block-release-after empty."}),
		removed:  prometheus.NewCounter(prometheus.CounterOpts{Name: "duet_agent_nodes_removed_total", Help: "Other nodes removed, with their blocks and addresses, after --node-gone-after without a heartbeat."}),
	}
	m.reg.MustRegister(m.syncs, m.duration, m.changed, m.routes, m.released, m.removed, prometheus.NewGoCollector())
	return m
}

// BlocksReleased and NodesRemoved count what the agent gave back
// (agent.GCMetrics).
func (m *metrics) BlocksReleased(n int) { m.released.Add(float64(n)) }
func (m *metrics) NodesRemoved(n int)   { m.removed.Add(float64(n)) }

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
