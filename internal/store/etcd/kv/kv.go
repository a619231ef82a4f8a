// Package kv is the wire between duet's etcd store and an etcd server: the
// one request the store needs (a Txn of ranges, puts and deletes guarded by
// ModRevision comparisons), and a lean transport for it over etcd's JSON
// gateway (net/http and encoding/json only).
//
// Why a transport of our own: the CNI plugin runs once per container, and
// linking etcd's gRPC client into it more than doubled its start-up time
// (VERSION 15 ms -> 36 ms). Every etcd v3 server also serves the same API
// as JSON on its client URL (/v3/kv/txn), so the plugin speaks that. duetd,
// which runs for days and watches, uses the gRPC client through package
// kvgrpc; both satisfy Transport, and the store's logic is shared.
package kv

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// Transport sends Txns to etcd. Implementations are safe for concurrent
// use.
type Transport interface {
	// Txn runs the request; a network or server failure is an error, a
	// failed comparison is not (Succeeded is false).
	Txn(ctx context.Context, req TxnRequest) (TxnResponse, error)
	Close() error
}

// OpKind is what an Op does.
type OpKind int

const (
	Range OpKind = iota
	Put
	Delete
)

// Op is one operation of a Txn's success branch. End, when set, makes a
// Range or Delete cover [Key, End) (PrefixEnd gives a prefix's End).
type Op struct {
	Kind  OpKind
	Key   string
	End   string
	Value []byte
	// Rev serves a Range at that revision (0: the newest).
	Rev int64
	// KeysOnly leaves values out of a Range's answer.
	KeysOnly bool
}

// CmpOp is a comparison's operator.
type CmpOp int

const (
	Equal CmpOp = iota
	Less
)

// Cmp compares the ModRevision of Key (of every key in [Key, End) when End
// is set; true for an empty range) with ModRev. An absent key's is 0.
type Cmp struct {
	Key    string
	End    string
	Op     CmpOp
	ModRev int64
}

// TxnRequest is compare-then-ops; there is no failure branch because the
// store retries from scratch when a comparison fails.
type TxnRequest struct {
	Compare []Cmp
	Success []Op
}

// KeyValue is one key as a Range returned it.
type KeyValue struct {
	Key         string
	Value       []byte
	ModRevision int64
}

// TxnResponse is the outcome: the revision the Txn was served at, and one
// entry per Op (the Range results; nil for Put and Delete) when Succeeded.
type TxnResponse struct {
	Succeeded bool
	Revision  int64
	Ranges    [][]KeyValue
}

// Error is a failure etcd answered with, carrying its gRPC status code
// (the gateway returns the same code in its JSON body).
type Error struct {
	Code    Code
	Message string
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s (code %s)", e.Message, e.Code)
}

// Compacted reports whether etcd refused a read at a revision it has
// compacted away.
func (e *Error) Compacted() bool {
	return e.Code == OutOfRange && strings.Contains(e.Message, "compacted")
}

// Code is a gRPC status code, numbered as gRPC does, so that this package
// need not import gRPC.
type Code int

// The codes the store tells apart.
const (
	OK                 Code = 0
	InvalidArgument    Code = 3
	NotFound           Code = 5
	AlreadyExists      Code = 6
	PermissionDenied   Code = 7
	FailedPrecondition Code = 9
	OutOfRange         Code = 11
	Unimplemented      Code = 12
	Unavailable        Code = 14
	Unauthenticated    Code = 16
)

func (c Code) String() string {
	switch c {
	case InvalidArgument:
		return "InvalidArgument"
	case NotFound:
		return "NotFound"
	case AlreadyExists:
		return "AlreadyExists"
	case PermissionDenied:
		return "PermissionDenied"
	case FailedPrecondition:
		return "FailedPrecondition"
	case OutOfRange:
		return "OutOfRange"
	case Unimplemented:
		return "Unimplemented"
	case Unavailable:
		return "Unavailable"
	case Unauthenticated:
		return "Unauthenticated"
	}
	return fmt.Sprintf("%d", int(c))
}

// Permanent reports whether the error says the request itself is wrong or
// not allowed, so retrying cannot help; anything else (a network error,
// no leader, a timeout) may go away by itself.
func Permanent(err error) bool {
	var e *Error
	if !errors.As(err, &e) {
		return false
	}
	switch e.Code {
	case InvalidArgument, PermissionDenied, Unauthenticated, FailedPrecondition,
		OutOfRange, Unimplemented, AlreadyExists, NotFound:
		return !e.Compacted()
	}
	return false
}

// PrefixEnd is the End that makes a range cover every key starting with
// prefix, as etcd's clientv3.GetPrefixRangeEnd computes it.
func PrefixEnd(prefix string) string {
	end := []byte(prefix)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return string(end[:i+1])
		}
	}
	return "\x00" // every key: etcd's convention for "no upper bound"
}
