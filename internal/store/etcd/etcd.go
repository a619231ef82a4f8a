// Package etcd is the cluster store.Store backend: every node's agent and
// every CNI plugin invocation talk to one etcd cluster, and every
// allocation is a compare-and-swap transaction on the revisions it read.
//
// Update is optimistic (software transactional memory): fn runs against a
// snapshot, its writes are buffered, and one etcd Txn commits them only if
// nothing fn read has changed since; otherwise fn runs again. See Update for
// exactly what is guaranteed.
//
// The package talks to etcd through a kv.Transport: by default etcd's JSON
// gateway (package kv, net/http only), because the CNI plugin, which runs
// once per container, links this package and must start fast; long-lived
// processes pass kvgrpc's gRPC transport to OpenTransport instead.
package etcd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/duetnet/duet/internal/store"
	"github.com/duetnet/duet/internal/store/etcd/kv"
)

// Defaults for the zero fields of Config.
const (
	DefaultPrefix         = "/duet/"
	DefaultDialTimeout    = 2 * time.Second
	DefaultRequestTimeout = 5 * time.Second
	// DefaultMaxTxnOps is etcd's own default for --max-txn-ops, the most
	// comparisons or writes one Txn may carry.
	DefaultMaxTxnOps = 128
	// HostLockWaitMax bounds an Update's wait in the host's queue
	// (Config.HostLock) while the queue moves; a holder that keeps the
	// lock for the request timeout ends the wait sooner. A runtime waits
	// minutes for a pod sandbox, so a minute still answers in time.
	HostLockWaitMax = time.Minute
)

// Config says where etcd is and how long to wait for it.
type Config struct {
	// Endpoints are client URLs such as "http://[fd00::1]:2379".
	Endpoints []string
	// Prefix namespaces every key, so several duet installations (or
	// tests) can share one etcd. Default DefaultPrefix.
	Prefix string
	// DialTimeout bounds Open's first contact; an unreachable etcd is
	// reported within it. Default DefaultDialTimeout.
	DialTimeout time.Duration
	// RequestTimeout bounds each read and each commit, so a partitioned
	// node answers "try again later" instead of hanging a CNI call.
	// Default DefaultRequestTimeout.
	RequestTimeout time.Duration
	// MaxTxnOps must not exceed the server's --max-txn-ops. Default
	// DefaultMaxTxnOps.
	MaxTxnOps int
	// TLS, if set, is used for the client connections.
	TLS *tls.Config
	// Dial, if set, makes the gateway's connections (the lab reaches its
	// etcd from inside a network namespace this way).
	Dial kv.DialFunc
	// HostLock, if set, is a file every Update of this host's processes
	// holds an exclusive flock on (package hostlock), for at most
	// RequestTimeout of waiting: the CNI plugins of one node then commit
	// their allocations one after another instead of racing each other's
	// optimistic transactions (64 pods at once would otherwise exhaust
	// MaxAttempts). Nodes still race each other, which is rare.
	HostLock string
}

// Store is a store.Store on etcd. It is safe for concurrent use.
type Store struct {
	kv  kv.Transport
	cfg Config
	// marker is the key every deleting transaction bumps; see commit.
	// Each top-level part of the key space ("claims/", "handles/") has
	// its own too (markerOf), so a List guarded by a marker conflicts
	// only with deletions in its own part.
	marker string
}

var _ store.Store = (*Store)(nil)

// Open connects to etcd over its JSON gateway and checks, within
// cfg.DialTimeout, that it answers: a plugin must learn that etcd is down
// at once, as store.ErrUnavailable, rather than on first use.
func Open(cfg Config) (*Store, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	t, err := kv.NewGateway(cfg.Endpoints, cfg.DialTimeout, cfg.TLS, cfg.Dial)
	if err != nil {
		return nil, fmt.Errorf("etcd store: %w", err)
	}
	return OpenTransport(cfg, t)
}

// OpenTransport is Open over a transport of the caller's (kvgrpc's, in
// duetd); the Store owns t from then on and closes it.
func OpenTransport(cfg Config, t kv.Transport) (*Store, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		_ = t.Close()
		return nil, err
	}
	s := &Store{kv: t, cfg: cfg, marker: cfg.Prefix}
	ctx, cancel := context.WithTimeout(context.Background(), cfg.DialTimeout)
	defer cancel()
	_, err = t.Txn(ctx, kv.TxnRequest{Success: []kv.Op{{Kind: kv.Range, Key: s.marker, KeysOnly: true}}})
	if err != nil {
		_ = t.Close()
		if !kv.Permanent(err) {
			return nil, fmt.Errorf("etcd at %s does not answer (waited up to %s: %v): check that etcd is running, that most of its members are up (without a majority it has no leader and answers nothing), and that the datastore endpoints are right: %w",
				strings.Join(cfg.Endpoints, ","), cfg.DialTimeout, err, store.ErrUnavailable)
		}
		return nil, fmt.Errorf("etcd store at %s: %w", strings.Join(cfg.Endpoints, ","), err)
	}
	return s, nil
}

func (cfg Config) withDefaults() (Config, error) {
	if len(cfg.Endpoints) == 0 {
		return cfg, errors.New("etcd store: no endpoints configured: set the datastore endpoints, e.g. http://127.0.0.1:2379")
	}
	if cfg.Prefix == "" {
		cfg.Prefix = DefaultPrefix
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = DefaultDialTimeout
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = DefaultRequestTimeout
	}
	if cfg.MaxTxnOps <= 0 {
		cfg.MaxTxnOps = DefaultMaxTxnOps
	}
	return cfg, nil
}

// segment is the top-level part of the key space key (or a listed
// prefix) lies in: up to and including its first '/', or "" when it has
// none (a prefix such as "" spans every part).
func segment(key string) string {
	if i := strings.IndexByte(key, '/'); i >= 0 {
		return key[:i+1]
	}
	return ""
}

// markerOf is the deletion marker guarding a segment: the store-wide one
// for "", else a key no List of a user prefix returns (it starts with a
// NUL byte, which no key of this package's users does).
func (s *Store) markerOf(seg string) string {
	if seg == "" {
		return s.marker
	}
	return s.marker + "\x00" + seg
}

// Close closes the client connections.
func (s *Store) Close() error {
	if err := s.kv.Close(); err != nil {
		return fmt.Errorf("close etcd store: %w", err)
	}
	return nil
}

// errRetry marks a read that cannot be served at the transaction's snapshot
// (the revision was compacted away), so the attempt starts over.
var errRetry = errors.New("etcd store: snapshot revision compacted, retrying")

// wrap turns an etcd client error into the error a caller should see: the
// caller's own context error, errRetry, a plain error for requests etcd
// rejects as wrong, or else store.ErrUnavailable, so that the plugin answers
// CNI code 11 ("try again later") while etcd is down or has no leader.
func (s *Store) wrap(ctx context.Context, op string, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("etcd store %s: %w", op, ctx.Err())
	}
	var ke *kv.Error
	if errors.As(err, &ke) && ke.Compacted() {
		return errRetry
	}
	if kv.Permanent(err) {
		return fmt.Errorf("etcd store %s: %w", op, err)
	}
	return fmt.Errorf("etcd store %s at %s: %v: %w", op, strings.Join(s.cfg.Endpoints, ","), err, store.ErrUnavailable)
}
