// Package etcd is the cluster store.Store backend: every node's agent and
// every CNI plugin invocation talk to one etcd cluster, and every
// allocation is a compare-and-swap transaction on the revisions it read.
//
// Update is optimistic (software transactional memory): fn runs against a
// snapshot, its writes are buffered, and one etcd Txn commits them only if
// nothing fn read has changed since; otherwise fn runs again. See Update for
// exactly what is guaranteed.
//
// The package imports etcd's client only, never its server, because the
// CNI plugin, which runs once per container, may link it.
package etcd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/duetnet/duet/internal/store"
)

// Defaults for the zero fields of Config.
const (
	DefaultPrefix         = "/duet/"
	DefaultDialTimeout    = 2 * time.Second
	DefaultRequestTimeout = 5 * time.Second
	// DefaultMaxTxnOps is etcd's own default for --max-txn-ops, the most
	// comparisons or writes one Txn may carry.
	DefaultMaxTxnOps = 128
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
	// Logger receives the etcd client's logs; nil discards them, so the
	// plugin's stderr stays readable.
	Logger *zap.Logger
}

// Store is a store.Store on etcd. It is safe for concurrent use.
type Store struct {
	cli *clientv3.Client
	cfg Config
	// marker is the key every deleting transaction bumps; see commit.
	marker string
}

var _ store.Store = (*Store)(nil)

// Open connects to etcd and checks, within cfg.DialTimeout, that it answers:
// clientv3.New alone succeeds even when nothing listens, and a plugin must
// learn that at once, as store.ErrUnavailable, rather than on first use.
func Open(cfg Config) (*Store, error) {
	if len(cfg.Endpoints) == 0 {
		return nil, errors.New("etcd store: no endpoints configured: set the datastore endpoints, e.g. http://127.0.0.1:2379")
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
	lg := cfg.Logger
	if lg == nil {
		lg = zap.NewNop()
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   cfg.Endpoints,
		DialTimeout: cfg.DialTimeout,
		TLS:         cfg.TLS,
		Logger:      lg,
	})
	if err != nil {
		return nil, fmt.Errorf("etcd store at %s: %w", strings.Join(cfg.Endpoints, ","), err)
	}
	s := &Store{cli: cli, cfg: cfg, marker: cfg.Prefix}
	ctx, cancel := context.WithTimeout(context.Background(), cfg.DialTimeout)
	defer cancel()
	if _, err := cli.Get(ctx, s.marker, clientv3.WithKeysOnly()); err != nil {
		_ = cli.Close()
		if isUnavailable(err) {
			return nil, fmt.Errorf("etcd at %s did not answer within %s (%v): check that etcd is running and that the datastore endpoints are right: %w",
				strings.Join(cfg.Endpoints, ","), cfg.DialTimeout, err, store.ErrUnavailable)
		}
		return nil, fmt.Errorf("etcd store at %s: %w", strings.Join(cfg.Endpoints, ","), err)
	}
	return s, nil
}

// Close closes the client connections.
func (s *Store) Close() error {
	if err := s.cli.Close(); err != nil && !errors.Is(err, context.Canceled) {
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
	if errors.Is(err, rpctypes.ErrCompacted) {
		return errRetry
	}
	if !isUnavailable(err) {
		return fmt.Errorf("etcd store %s: %w", op, err)
	}
	return fmt.Errorf("etcd store %s at %s: %v: %w", op, strings.Join(s.cfg.Endpoints, ","), err, store.ErrUnavailable)
}

// isUnavailable reports whether err may go away by itself: anything but
// etcd saying the request itself is wrong or not allowed.
func isUnavailable(err error) bool {
	code := status.Code(err)
	var ee rpctypes.EtcdError
	if errors.As(err, &ee) {
		code = ee.Code()
	}
	switch code {
	case codes.InvalidArgument, codes.PermissionDenied, codes.Unauthenticated,
		codes.FailedPrecondition, codes.OutOfRange, codes.Unimplemented, codes.AlreadyExists, codes.NotFound:
		return false
	}
	return true
}
