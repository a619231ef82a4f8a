// Package etcdserver runs an etcd member inside duetd, so that a lab or a
// small cluster needs no separate etcd install: one host runs
// `duetd --embed-etcd DIR --etcd-only`, the others point --etcd-endpoints
// at it; three hosts that each run one member with the same
// --etcd-initial-cluster make an etcd that survives losing one of them.
// Restarting on the same directory keeps the data (etcd replays its
// write-ahead log and ignores the bootstrap settings).
//
// Only duetd imports this package; the CNI plugin must never link etcd's
// server (cmd/duet's TestLean checks).
package etcdserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"google.golang.org/grpc"
)

// ReadyTimeout bounds how long Start waits for the member to serve.
const ReadyTimeout = 30 * time.Second

// Errors Start wraps, so that a caller can name its own flag and the fix.
var (
	// ErrDir means the data directory cannot be created or written.
	ErrDir = errors.New("etcd data directory is not usable")
	// ErrListen means a listen URL cannot be bound: the port is taken, or
	// the address is not one of this host's.
	ErrListen = errors.New("etcd cannot listen")
)

// Config says where the member keeps its data and where it listens.
type Config struct {
	// Dir holds the data (created 0700 if missing).
	Dir string
	// Name is the member's name. Default "default".
	Name string
	// ListenClient are the client URLs, such as http://[fd00::1]:2379.
	// Default http://127.0.0.1:2379.
	ListenClient []url.URL
	// ListenPeer are the peer URLs; a single member has no peers, so the
	// default is a free port on the loopback. A member of a cluster
	// listens where Cluster says it is.
	ListenPeer []url.URL
	// Cluster, when it has more than one member, makes this member one
	// of them: every member's name and peer URL, this one (Name)
	// included, alike on every member (etcd's --initial-cluster). Start
	// returns once the cluster has a leader, so start a quorum of members
	// together. Used on the first start only, as etcd does.
	Cluster []Member
	// LogLevel is etcd's own (zap) log level: debug, info, warn or error.
	// Default error, so duetd's log stays readable.
	LogLevel string
	// Log receives this package's own messages; nil discards them.
	Log *slog.Logger
}

// Member is one member of a cluster being bootstrapped.
type Member struct {
	Name string
	Peer url.URL
}

// Server is a running member. Close stops it.
type Server struct {
	etcd *embed.Etcd
	cfg  Config
	once sync.Once
	// level is raised to fatal at Close: etcd logs its own closing
	// listeners as errors.
	level zap.AtomicLevel

	mu sync.Mutex
	// grpc are the client-facing servers, stopped by Close before etcd
	// would wait its whole request timeout (7s) for open watch streams.
	grpc []*grpc.Server
}

// Start starts the member and waits, at most ReadyTimeout or until ctx
// ends, for it to serve clients.
func Start(ctx context.Context, cfg Config) (*Server, error) {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Name == "" {
		cfg.Name = embed.DefaultName
	}
	if cfg.LogLevel == "" {
		cfg.LogLevel = "error"
	}
	if len(cfg.ListenClient) == 0 {
		cfg.ListenClient = []url.URL{{Scheme: "http", Host: "127.0.0.1:2379"}}
	}
	if err := checkDir(cfg.Dir); err != nil {
		return nil, err
	}
	for _, u := range cfg.ListenClient {
		if err := checkListen(u); err != nil {
			return nil, err
		}
	}
	if len(cfg.Cluster) > 1 && len(cfg.ListenPeer) == 0 {
		for _, m := range cfg.Cluster {
			if m.Name == cfg.Name {
				cfg.ListenPeer = []url.URL{m.Peer}
			}
		}
		if len(cfg.ListenPeer) == 0 {
			return nil, fmt.Errorf("etcd member %q is not in its own initial cluster: add %s=URL to it", cfg.Name, cfg.Name)
		}
	}
	if len(cfg.ListenPeer) == 0 {
		u, err := freeLoopback()
		if err != nil {
			return nil, err
		}
		cfg.ListenPeer = []url.URL{u}
	}
	ec := embed.NewConfig()
	ec.Name, ec.Dir = cfg.Name, cfg.Dir
	level, err := zap.ParseAtomicLevel(cfg.LogLevel)
	if err != nil {
		return nil, fmt.Errorf("etcd log level %q: use debug, info, warn or error", cfg.LogLevel)
	}
	zc := zap.NewProductionConfig()
	zc.Level, zc.Encoding, zc.DisableStacktrace, zc.Sampling = level, "console", true, nil
	zc.EncoderConfig.EncodeTime = zapcore.ISO8601TimeEncoder
	lg, err := zc.Build()
	if err != nil {
		return nil, err
	}
	ec.LogLevel, ec.ZapLoggerBuilder = cfg.LogLevel, embed.NewZapLoggerBuilder(lg.Named("etcd"))
	ec.ListenClientUrls, ec.AdvertiseClientUrls = cfg.ListenClient, advertise(cfg.ListenClient)
	ec.ListenPeerUrls, ec.AdvertisePeerUrls = cfg.ListenPeer, advertise(cfg.ListenPeer)
	// Used on the first start only; later starts find the WAL and keep
	// the member they made then.
	ec.InitialCluster = ec.InitialClusterFromName(cfg.Name)
	if len(cfg.Cluster) > 1 {
		var parts []string
		for _, m := range cfg.Cluster {
			parts = append(parts, m.Name+"="+m.Peer.String())
		}
		ec.InitialCluster = strings.Join(parts, ",")
	}
	ec.ClusterState = embed.ClusterStateFlagNew
	// Keep an hour of history: watchers that fall further behind get
	// ErrCompacted and resynchronise; the backend does not grow forever.
	ec.AutoCompactionMode, ec.AutoCompactionRetention = embed.CompactorModePeriodic, "1h"
	// A single member has nobody to heartbeat and nobody to lose an
	// election to: with etcd's defaults (100 ms ticks, 1 s election) it
	// still waits most of a second to elect itself on every start.
	// Shorter ticks make a start (and restart) take tens of milliseconds.
	ec.TickMs, ec.ElectionMs = 10, 100
	if len(cfg.Cluster) > 1 {
		// Members do heartbeat each other: ticks of 50 ms and a 500 ms
		// election survive a loaded machine without spurious elections,
		// and a lost leader is replaced in about a second, not etcd's
		// default of several.
		ec.TickMs, ec.ElectionMs = 50, 500
	}
	s := &Server{cfg: cfg, level: level}
	ec.ServiceRegister = func(g *grpc.Server) {
		s.mu.Lock()
		s.grpc = append(s.grpc, g)
		s.mu.Unlock()
	}
	e, err := embed.StartEtcd(ec)
	if err != nil {
		return nil, fmt.Errorf("start etcd in %s: %w", cfg.Dir, err)
	}
	s.etcd = e
	timer := time.NewTimer(ReadyTimeout)
	defer timer.Stop()
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		s.Close()
		return nil, fmt.Errorf("etcd in %s: %w", cfg.Dir, err)
	case <-timer.C:
		s.Close()
		return nil, fmt.Errorf("etcd in %s was not ready after %s: see its log (raise its log level), or move the data directory aside if it belongs to another cluster", cfg.Dir, ReadyTimeout)
	case <-ctx.Done():
		s.Close()
		return nil, ctx.Err()
	}
	cfg.Log.Info("embedded etcd ready", "dir", cfg.Dir, "endpoints", s.Endpoints())
	return s, nil
}

// Endpoints are the client URLs to dial, as strings.
func (s *Server) Endpoints() []string {
	var out []string
	for _, u := range advertise(s.cfg.ListenClient) {
		out = append(out, u.String())
	}
	return out
}

// Health answers nil when the member serves linearizable reads (it has a
// leader and applies), and raises no alarm such as a full backend; this is
// what etcd's own /health checks.
func (s *Server) Health(ctx context.Context) error {
	if as := s.etcd.Server.Alarms(); len(as) > 0 {
		return fmt.Errorf("etcd alarm %s: see etcdctl alarm list", as[0].Alarm)
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if _, err := s.etcd.Server.Range(ctx, &etcdserverpb.RangeRequest{Key: []byte("health"), CountOnly: true}); err != nil {
		return fmt.Errorf("etcd does not answer a read: %w", err)
	}
	return nil
}

// IsLeader reports whether this member leads its cluster now.
func (s *Server) IsLeader() bool { return s.etcd.Server.Leader() == s.etcd.Server.MemberID() }

// Err reports a fatal error of the running member (nil while it serves).
func (s *Server) Err() <-chan error { return s.etcd.Err() }

// Close stops the member and waits for it; calling it twice is harmless.
func (s *Server) Close() {
	s.once.Do(func() {
		s.level.SetLevel(zapcore.FatalLevel)
		s.mu.Lock()
		for _, g := range s.grpc {
			stopGRPC(g, closeGrace)
		}
		s.mu.Unlock()
		s.etcd.Close()
		<-s.etcd.Server.StopNotify()
		s.cfg.Log.Info("embedded etcd stopped", "dir", s.cfg.Dir)
	})
}

// closeGrace is how long Close lets requests in flight finish. Watch
// streams never finish: clients see the stream break and come back.
const closeGrace = time.Second

func stopGRPC(g *grpc.Server, grace time.Duration) {
	done := make(chan struct{})
	go func() { g.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-time.After(grace):
		g.Stop()
		<-done
	}
}

// checkDir creates dir and proves it writable, so that the error says so
// instead of etcd's log.
func checkDir(dir string) error {
	if dir == "" {
		return fmt.Errorf("%w: no directory given", ErrDir)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("%w: %v: choose a directory this user can create and write", ErrDir, err)
	}
	f, err := os.CreateTemp(dir, ".probe-*")
	if err != nil {
		return fmt.Errorf("%w: %s is not writable (%v): fix its permissions or choose another", ErrDir, dir, err)
	}
	f.Close()
	return os.Remove(f.Name())
}

// checkListen binds u's address once and lets it go, to name the URL in
// the error when the port is taken (etcd would only log it).
func checkListen(u url.URL) error {
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("%w: %q: write a URL like http://[fd00::1]:2379", ErrListen, u.String())
	}
	if u.Port() == "" {
		return fmt.Errorf("%w: %q has no port: write it like http://[fd00::1]:2379", ErrListen, u.String())
	}
	l, err := net.Listen("tcp", u.Host)
	if err != nil {
		return fmt.Errorf("%w on %s: %v: stop what listens there, choose another port, or use an address of this host", ErrListen, u.String(), err)
	}
	return l.Close()
}

// freeLoopback is a peer URL on a loopback port nothing listens on.
func freeLoopback() (url.URL, error) {
	var errs []error
	for _, host := range []string{"127.0.0.1:0", "[::1]:0"} {
		l, err := net.Listen("tcp", host)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		defer l.Close()
		return url.URL{Scheme: "http", Host: l.Addr().String()}, nil
	}
	return url.URL{}, fmt.Errorf("%w: no free loopback port for the peer URL: %v", ErrListen, errors.Join(errs...))
}

// advertise replaces an unspecified host (0.0.0.0, [::]) by the loopback
// of its family: clients cannot dial "any address".
func advertise(us []url.URL) []url.URL {
	out := make([]url.URL, len(us))
	for i, u := range us {
		if ip := net.ParseIP(u.Hostname()); ip != nil && ip.IsUnspecified() {
			lo := "127.0.0.1"
			if ip.To4() == nil {
				lo = "::1"
			}
			u.Host = net.JoinHostPort(lo, u.Port())
		}
		out[i] = u
	}
	return out
}
