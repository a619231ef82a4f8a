// Package kvgrpc is the kv.Transport over etcd's own gRPC client, for
// long-lived processes (duetd, benchmarks): it multiplexes every request
// over one HTTP/2 connection and costs less per request than the JSON
// gateway, but too much start-up time for the once-per-container CNI
// plugin, which must never import this package.
package kvgrpc

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc/status"

	"github.com/duetnet/duet/internal/store/etcd/kv"
)

// Transport is a kv.Transport on a clientv3.Client.
type Transport struct {
	cli *clientv3.Client
}

var _ kv.Transport = (*Transport)(nil)

// Dial makes the client; like clientv3.New it does not wait for a
// connection (the store's Open checks that etcd answers). A nil logger
// discards the client's logs.
func Dial(endpoints []string, dialTimeout time.Duration, tlsCfg *tls.Config, log *zap.Logger) (*Transport, error) {
	if log == nil {
		log = zap.NewNop()
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: dialTimeout, TLS: tlsCfg, Logger: log})
	if err != nil {
		return nil, err
	}
	return &Transport{cli: cli}, nil
}

// Client is the underlying client, for watches.
func (t *Transport) Client() *clientv3.Client { return t.cli }

// Close closes the client.
func (t *Transport) Close() error {
	if err := t.cli.Close(); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// Txn translates req into one clientv3 Txn.
func (t *Transport) Txn(ctx context.Context, req kv.TxnRequest) (kv.TxnResponse, error) {
	cmps := make([]clientv3.Cmp, 0, len(req.Compare))
	for _, c := range req.Compare {
		op := "="
		if c.Op == kv.Less {
			op = "<"
		}
		cmp := clientv3.Compare(clientv3.ModRevision(c.Key), op, c.ModRev)
		if c.End != "" {
			cmp = cmp.WithRange(c.End)
		}
		cmps = append(cmps, cmp)
	}
	ops := make([]clientv3.Op, 0, len(req.Success))
	for _, o := range req.Success {
		switch o.Kind {
		case kv.Range:
			var opts []clientv3.OpOption
			if o.End != "" {
				opts = append(opts, clientv3.WithRange(o.End))
			}
			if o.Rev != 0 {
				opts = append(opts, clientv3.WithRev(o.Rev))
			}
			if o.KeysOnly {
				opts = append(opts, clientv3.WithKeysOnly())
			}
			ops = append(ops, clientv3.OpGet(o.Key, opts...))
		case kv.Put:
			ops = append(ops, clientv3.OpPut(o.Key, string(o.Value)))
		case kv.Delete:
			var opts []clientv3.OpOption
			if o.End != "" {
				opts = append(opts, clientv3.WithRange(o.End))
			}
			ops = append(ops, clientv3.OpDelete(o.Key, opts...))
		default:
			return kv.TxnResponse{}, fmt.Errorf("kvgrpc: unknown op kind %d", o.Kind)
		}
	}
	resp, err := t.cli.Txn(ctx).If(cmps...).Then(ops...).Commit()
	if err != nil {
		return kv.TxnResponse{}, convert(err)
	}
	out := kv.TxnResponse{Succeeded: resp.Succeeded, Revision: resp.Header.Revision}
	for _, r := range resp.Responses {
		rr := r.GetResponseRange()
		if rr == nil {
			out.Ranges = append(out.Ranges, nil)
			continue
		}
		kvs := make([]kv.KeyValue, 0, len(rr.Kvs))
		for _, x := range rr.Kvs {
			kvs = append(kvs, kv.KeyValue{Key: string(x.Key), Value: x.Value, ModRevision: x.ModRevision})
		}
		out.Ranges = append(out.Ranges, kvs)
	}
	return out, nil
}

// convert keeps etcd's verdict (its code and message) in a *kv.Error, so
// the store classifies both transports' errors the same way; anything
// without a status (a context error) passes through.
func convert(err error) error {
	var ee rpctypes.EtcdError
	if errors.As(err, &ee) {
		return &kv.Error{Code: kv.Code(ee.Code()), Message: ee.Error()}
	}
	if s, ok := status.FromError(err); ok {
		return &kv.Error{Code: kv.Code(s.Code()), Message: s.Message()}
	}
	return err
}
