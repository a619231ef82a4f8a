package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/duetnet/duet/internal/agent"
	"github.com/duetnet/duet/internal/cluster"
	"github.com/duetnet/duet/internal/config"
	"github.com/duetnet/duet/internal/etcdserver"
	"github.com/duetnet/duet/internal/ipam"
	"github.com/duetnet/duet/internal/store"
	"github.com/duetnet/duet/internal/store/etcd"
	"github.com/duetnet/duet/internal/store/etcd/kvgrpc"
	"github.com/duetnet/duet/internal/store/etcdwatch"
	"github.com/duetnet/duet/internal/store/open"
)

// urlList is --etcd-listen URL, repeatable or comma-separated.
type urlList []url.URL

func (l *urlList) String() string {
	var s []string
	for _, u := range *l {
		s = append(s, u.String())
	}
	return strings.Join(s, ",")
}

func (l *urlList) Set(s string) error {
	for _, f := range strings.Split(s, ",") {
		u, err := parseEtcdURL(strings.TrimSpace(f))
		if err != nil {
			return err
		}
		*l = append(*l, u)
	}
	return nil
}

func parseEtcdURL(s string) (url.URL, error) {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" || u.Port() == "" || (u.Path != "" && u.Path != "/") {
		return url.URL{}, fmt.Errorf("%q is not an etcd URL: write it like http://[fd00::1]:2379 or http://10.0.0.1:2379", s)
	}
	u.Path = ""
	return *u, nil
}

// etcdFlags are the flags that put the store in etcd.
type etcdFlags struct {
	endpoints string
	embedDir  string
	listen    urlList
	only      bool
	logLevel  string
	// caFile, certFile and keyFile secure --etcd-endpoints over https,
	// as caFile, certFile and keyFile do in the plugin's datastore.
	caFile, certFile, keyFile string
	// cfg is --etcd-endpoints parsed with its TLS files loaded, set by
	// main after check.
	cfg etcd.Config
}

// check validates the combination and loads the TLS files; boltSet is
// whether --datastore-path was given. It returns the store's
// configuration for --etcd-endpoints (no endpoints without it).
func (f *etcdFlags) check(boltSet bool) (etcd.Config, error) {
	var eps []string
	var plain string // an http:// endpoint, if any
	if f.endpoints != "" {
		for _, e := range strings.Split(f.endpoints, ",") {
			u, err := parseEtcdURL(strings.TrimSpace(e))
			if err != nil {
				return etcd.Config{}, fmt.Errorf("--etcd-endpoints: %w", err)
			}
			eps = append(eps, u.String())
			if u.Scheme == "http" && plain == "" {
				plain = u.String()
			}
		}
	}
	tlsFlag := f.tlsFlag()
	switch {
	case f.only && f.embedDir == "":
		return etcd.Config{}, errors.New("--etcd-only runs just the embedded etcd: give it --embed-etcd DIR")
	case f.only && f.endpoints != "":
		return etcd.Config{}, errors.New("--etcd-only serves the embedded etcd and uses no datastore: drop --etcd-endpoints")
	case len(f.listen) > 0 && f.embedDir == "":
		return etcd.Config{}, errors.New("--etcd-listen is where the embedded etcd listens: add --embed-etcd DIR, or drop it and point --etcd-endpoints at your etcd")
	case boltSet && (f.endpoints != "" || f.embedDir != ""):
		return etcd.Config{}, errors.New("--datastore-path is the bolt file, but --etcd-endpoints or --embed-etcd puts the store in etcd: choose one")
	case f.certFile != "" && f.keyFile == "":
		return etcd.Config{}, errors.New("--etcd-cert-file needs its private key: add --etcd-key-file")
	case f.keyFile != "" && f.certFile == "":
		return etcd.Config{}, errors.New("--etcd-key-file is the key of a client certificate: add --etcd-cert-file")
	case tlsFlag != "" && f.endpoints == "":
		return etcd.Config{}, fmt.Errorf("%s secures --etcd-endpoints over https (the embedded etcd serves plain http): add --etcd-endpoints https://HOST:PORT, or drop %s", tlsFlag, tlsFlag)
	case tlsFlag != "" && plain != "":
		return etcd.Config{}, fmt.Errorf("%s is for https, but --etcd-endpoints has %s: use https:// URLs, or drop %s", tlsFlag, plain, tlsFlag)
	}
	return f.load(eps)
}

// tlsFlag names the first TLS flag given, or is empty.
func (f *etcdFlags) tlsFlag() string {
	switch {
	case f.caFile != "":
		return "--etcd-ca-file"
	case f.certFile != "":
		return "--etcd-cert-file"
	case f.keyFile != "":
		return "--etcd-key-file"
	}
	return ""
}

// load loads the TLS files through open.EtcdConfig, as the plugin does,
// and names this command's flags in its errors instead of the plugin's
// datastore fields. With https endpoints and no --etcd-ca-file, etcd's
// certificate is checked against the system's roots.
func (f *etcdFlags) load(eps []string) (etcd.Config, error) {
	cfg, err := open.EtcdConfig(config.Datastore{Type: config.DatastoreEtcd, Endpoints: eps, CAFile: f.caFile, CertFile: f.certFile, KeyFile: f.keyFile})
	if err == nil {
		return cfg, nil
	}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		flag := "--etcd-cert-file"
		switch pe.Path {
		case f.caFile:
			flag = "--etcd-ca-file"
		case f.keyFile:
			flag = "--etcd-key-file"
		}
		return etcd.Config{}, fmt.Errorf("%s %s: cannot read it (%v): fix the path or its permissions", flag, pe.Path, pe.Err)
	}
	// The rest are about the files' contents; open's messages start with
	// the datastore field, which becomes the flag.
	field, msg, _ := strings.Cut(err.Error(), ": ")
	if field == "datastore.caFile" {
		return etcd.Config{}, fmt.Errorf("--etcd-ca-file: %s", msg)
	}
	return etcd.Config{}, fmt.Errorf("--etcd-cert-file %s, --etcd-key-file %s: %s: give the client certificate and its private key, both PEM", f.certFile, f.keyFile, msg)
}

func (f *etcdFlags) etcd() bool { return f.endpoints != "" || f.embedDir != "" }

// startEmbedded starts the embedded etcd, with errors that name the flag
// to change.
func startEmbedded(ctx context.Context, f *etcdFlags, log *slog.Logger) (*etcdserver.Server, error) {
	srv, err := etcdserver.Start(ctx, etcdserver.Config{Dir: f.embedDir, ListenClient: f.listen, LogLevel: f.logLevel, Log: log})
	switch {
	case errors.Is(err, etcdserver.ErrDir):
		return nil, fmt.Errorf("--embed-etcd %s: %w", f.embedDir, err)
	case errors.Is(err, etcdserver.ErrListen):
		return nil, fmt.Errorf("--etcd-listen: %w", err)
	case err != nil:
		return nil, fmt.Errorf("--embed-etcd %s: %w", f.embedDir, err)
	}
	return srv, nil
}

// etcdStore is the agent's store in etcd: opened once and kept (the agent
// closes its store after each sync, which suits bolt's file lock, not a
// client with connections). While etcd is unreachable each sync tries
// again, so duetd rides out an etcd that starts after it.
type etcdStore struct {
	cfg etcd.Config
	// t is the one gRPC client: the store's transactions and the
	// mirror's watches share its connection.
	t  *kvgrpc.Transport
	mu sync.Mutex
	st store.Store
}

// newEtcdStore dials the client (without waiting for etcd: each sync and
// the mirror's watches retry until it answers).
func newEtcdStore(cfg etcd.Config) (*etcdStore, error) {
	t, err := kvgrpc.Dial(cfg.Endpoints, etcd.DefaultDialTimeout, cfg.TLS, nil)
	if err != nil {
		return nil, fmt.Errorf("--etcd-endpoints %s: %w", strings.Join(cfg.Endpoints, ","), err)
	}
	return &etcdStore{cfg: cfg, t: t}, nil
}

// open returns the store; its Close does nothing.
func (e *etcdStore) open() (store.Store, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.st == nil {
		st, err := etcd.OpenTransport(e.cfg, sharedTransport{e.t})
		if err != nil {
			// The store's error says what to check (is etcd running?),
			// and wraps store.ErrUnavailable when it is only unreachable.
			return nil, fmt.Errorf("--etcd-endpoints %s: %w", strings.Join(e.cfg.Endpoints, ","), err)
		}
		e.st = st
	}
	return keepOpen{e.st}, nil
}

// Close closes the store and the client at exit.
func (e *etcdStore) Close() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.st != nil {
		_ = e.st.Close()
		e.st = nil
	}
	_ = e.t.Close()
}

// sharedTransport is the client as the store sees it: the store's Close
// (or a failed OpenTransport) leaves it to etcdStore.Close.
type sharedTransport struct{ *kvgrpc.Transport }

func (sharedTransport) Close() error { return nil }

// mirror follows the nodes and blocks over the store's client: the
// agent's desired state, kept in memory (see etcdwatch.Mirror). It wakes
// the agent only for changes agent.Relevant says can move a route.
func (e *etcdStore) mirror(log *slog.Logger) *etcdwatch.Mirror {
	return etcdwatch.NewMirror(e.t.Client(), cmp.Or(e.cfg.Prefix, etcd.DefaultPrefix), []string{cluster.NodesPrefix, ipam.BlocksPrefix}, decodeCluster,
		func(ev etcdwatch.Event) bool { return agent.Relevant(ev.Key, ev.Prev, ev.Value) }, log)
}

func decodeCluster(part, _ string, value []byte) (any, error) {
	if part == cluster.NodesPrefix {
		var n cluster.Node
		err := json.Unmarshal(value, &n)
		return n, err
	}
	var b ipam.Block
	err := json.Unmarshal(value, &b)
	return b, err
}

// mirrorCache is the mirror as the agent's ClusterCache, in key order
// as a read of the store gives them.
type mirrorCache struct{ m *etcdwatch.Mirror }

func (c mirrorCache) Cluster() ([]cluster.Node, []ipam.Block, bool) {
	nm, ok := c.m.Snapshot(cluster.NodesPrefix)
	if !ok {
		return nil, nil, false
	}
	bm, _ := c.m.Snapshot(ipam.BlocksPrefix)
	nodes := make([]cluster.Node, 0, len(nm))
	for _, k := range slices.Sorted(maps.Keys(nm)) {
		nodes = append(nodes, nm[k].(cluster.Node))
	}
	blocks := make([]ipam.Block, 0, len(bm))
	for _, k := range slices.Sorted(maps.Keys(bm)) {
		blocks = append(blocks, bm[k].(ipam.Block))
	}
	return nodes, blocks, true
}

// keepOpen is a store whose Close is left to etcdStore.
type keepOpen struct{ store.Store }

func (keepOpen) Close() error { return nil }

// runEtcdOnly serves the embedded etcd and /healthz until ctx ends or etcd
// fails: a store host, with no agent and nothing programmed.
func runEtcdOnly(ctx context.Context, log *slog.Logger, srv *etcdserver.Server, httpAddr string) error {
	if httpAddr != "" {
		mux := http.NewServeMux()
		mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
			if err := srv.Health(r.Context()); err != nil {
				http.Error(w, "unhealthy: "+err.Error(), http.StatusServiceUnavailable)
				return
			}
			fmt.Fprintln(w, "ok")
		})
		defer serveHTTP(httpAddr, mux, log)()
	}
	log.Info("duetd serving etcd only", "endpoints", srv.Endpoints())
	select {
	case <-ctx.Done():
		return nil
	case err := <-srv.Err():
		return fmt.Errorf("embedded etcd: %w", err)
	}
}

// serveHTTP serves mux on addr until stop; a failure to listen is logged
// (the agent runs on without /healthz and /metrics).
func serveHTTP(addr string, mux *http.ServeMux, log *slog.Logger) (stop func()) {
	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("http: check --http", "err", err)
		}
	}()
	return func() { srv.Close() }
}
