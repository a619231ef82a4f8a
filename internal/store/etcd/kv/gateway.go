package kv

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// Gateway is a Transport over etcd's JSON gateway (POST /v3/kv/txn on a
// client URL). It keeps connections alive, so a long-lived user pays the
// TCP (and TLS) handshake once per endpoint.
type Gateway struct {
	endpoints []string
	client    *http.Client
	// next is the endpoint to try first: the last one that answered.
	next atomic.Int64
}

var _ Transport = (*Gateway)(nil)

// NewGateway returns a Gateway for endpoints (client URLs such as
// "http://[fd00::1]:2379"; a URL without a scheme is taken as http).
// dialTimeout bounds each connection attempt; tlsCfg, if set, is used for
// https endpoints; dial, if set, makes the connections (the lab dials from
// inside a network namespace). Nothing is contacted until the first Txn.
func NewGateway(endpoints []string, dialTimeout time.Duration, tlsCfg *tls.Config, dial DialFunc) (*Gateway, error) {
	if len(endpoints) == 0 {
		return nil, errors.New("no etcd endpoints")
	}
	g := &Gateway{}
	for _, ep := range endpoints {
		if !strings.Contains(ep, "://") {
			ep = "http://" + ep
		}
		if !strings.HasPrefix(ep, "http://") && !strings.HasPrefix(ep, "https://") {
			return nil, fmt.Errorf("etcd endpoint %q: use an http:// or https:// client URL such as http://[fd00::1]:2379", ep)
		}
		g.endpoints = append(g.endpoints, strings.TrimRight(ep, "/"))
	}
	if dial == nil {
		dial = (&net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second}).DialContext
	}
	g.client = &http.Client{Transport: &http.Transport{
		DialContext:         dial,
		TLSClientConfig:     tlsCfg,
		TLSHandshakeTimeout: dialTimeout,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
		// etcd's gateway answers small JSON; compression only costs CPU.
		DisableCompression: true,
	}}
	return g, nil
}

// DialFunc makes a connection, as net.Dialer.DialContext does.
type DialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// Close drops idle connections.
func (g *Gateway) Close() error {
	g.client.CloseIdleConnections()
	return nil
}

// Txn posts the request to the endpoint that answered last, and to the
// others in turn only when a connection cannot be made: a request that was
// sent may have been applied, so it is never sent twice.
func (g *Gateway) Txn(ctx context.Context, req TxnRequest) (TxnResponse, error) {
	body, err := json.Marshal(encodeTxn(req))
	if err != nil {
		return TxnResponse{}, err
	}
	first := int(g.next.Load())
	var errs []error
	for i := range g.endpoints {
		idx := (first + i) % len(g.endpoints)
		resp, err := g.post(ctx, g.endpoints[idx], body)
		if err == nil {
			g.next.Store(int64(idx))
			return resp, nil
		}
		errs = append(errs, err)
		if !dialFailed(err) || ctx.Err() != nil {
			break
		}
	}
	if len(errs) == 1 {
		return TxnResponse{}, errs[0]
	}
	return TxnResponse{}, joined(errs)
}

// joined is errors.Join on one line, since its text ends up in a CNI
// error message.
type joined []error

func (j joined) Error() string {
	var parts []string
	for _, e := range j {
		parts = append(parts, e.Error())
	}
	return strings.Join(parts, "; ")
}

func (j joined) Unwrap() []error { return j }

func (g *Gateway) post(ctx context.Context, endpoint string, body []byte) (TxnResponse, error) {
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint+"/v3/kv/txn", bytes.NewReader(body))
	if err != nil {
		return TxnResponse{}, err
	}
	hreq.Header.Set("Content-Type", "application/json")
	hresp, err := g.client.Do(hreq)
	if err != nil {
		return TxnResponse{}, err
	}
	defer hresp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(hresp.Body, 64<<20))
	if err != nil {
		return TxnResponse{}, fmt.Errorf("reading etcd's answer from %s: %w", endpoint, err)
	}
	if hresp.StatusCode != http.StatusOK {
		return TxnResponse{}, decodeError(endpoint, hresp.StatusCode, data)
	}
	var wire txnResponseJSON
	if err := json.Unmarshal(data, &wire); err != nil {
		return TxnResponse{}, fmt.Errorf("etcd at %s answered something that is not a Txn response (is it etcd v3.4 or later, with its gRPC gateway on?): %w", endpoint, err)
	}
	return wire.decode()
}

// dialFailed reports whether err happened before the request left: the
// connection could not be made, so another endpoint may safely be tried.
func dialFailed(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// decodeError turns the gateway's error body ({"error"|"message", "code"})
// into an *Error.
func decodeError(endpoint string, status int, data []byte) error {
	var body struct {
		Error   string `json:"error"`
		Message string `json:"message"`
		Code    int    `json:"code"`
	}
	if json.Unmarshal(data, &body) != nil || body.Code == 0 {
		msg := strings.TrimSpace(string(data))
		if len(msg) > 200 {
			msg = msg[:200]
		}
		code := Unavailable
		if status == http.StatusNotFound {
			// No /v3/kv/txn here: not etcd, or its gateway is off.
			code = Unimplemented
			msg = "no etcd v3 JSON gateway at " + endpoint + " (is it an etcd client URL, etcd v3.4 or later, started without --enable-grpc-gateway=false?): " + msg
		}
		return &Error{Code: code, Message: fmt.Sprintf("HTTP %d from %s: %s", status, endpoint, msg)}
	}
	msg := body.Message
	if msg == "" {
		msg = body.Error
	}
	return &Error{Code: Code(body.Code), Message: msg}
}

// The JSON shapes are etcd's protobuf messages in proto3's JSON mapping:
// bytes as base64 (encoding/json does that for []byte), 64-bit integers as
// strings, enums by name, fields by their proto names.

type rangeJSON struct {
	Key      []byte `json:"key"`
	RangeEnd []byte `json:"range_end,omitempty"`
	Revision int64  `json:"revision,omitempty,string"`
	KeysOnly bool   `json:"keys_only,omitempty"`
}

type putJSON struct {
	Key   []byte `json:"key"`
	Value []byte `json:"value"`
}

type deleteJSON struct {
	Key      []byte `json:"key"`
	RangeEnd []byte `json:"range_end,omitempty"`
}

type requestOpJSON struct {
	Range  *rangeJSON  `json:"request_range,omitempty"`
	Put    *putJSON    `json:"request_put,omitempty"`
	Delete *deleteJSON `json:"request_delete_range,omitempty"`
}

type compareJSON struct {
	Result      string `json:"result"`
	Target      string `json:"target"`
	Key         []byte `json:"key"`
	RangeEnd    []byte `json:"range_end,omitempty"`
	ModRevision int64  `json:"mod_revision,string"`
}

type txnRequestJSON struct {
	Compare []compareJSON   `json:"compare,omitempty"`
	Success []requestOpJSON `json:"success,omitempty"`
}

func bytesOrNil(s string) []byte {
	if s == "" {
		return nil
	}
	return []byte(s)
}

func encodeTxn(req TxnRequest) txnRequestJSON {
	var w txnRequestJSON
	for _, c := range req.Compare {
		result := "EQUAL"
		if c.Op == Less {
			result = "LESS"
		}
		w.Compare = append(w.Compare, compareJSON{Result: result, Target: "MOD",
			Key: []byte(c.Key), RangeEnd: bytesOrNil(c.End), ModRevision: c.ModRev})
	}
	for _, op := range req.Success {
		switch op.Kind {
		case Range:
			w.Success = append(w.Success, requestOpJSON{Range: &rangeJSON{Key: []byte(op.Key),
				RangeEnd: bytesOrNil(op.End), Revision: op.Rev, KeysOnly: op.KeysOnly}})
		case Put:
			value := op.Value
			if value == nil {
				value = []byte{}
			}
			w.Success = append(w.Success, requestOpJSON{Put: &putJSON{Key: []byte(op.Key), Value: value}})
		case Delete:
			w.Success = append(w.Success, requestOpJSON{Delete: &deleteJSON{Key: []byte(op.Key), RangeEnd: bytesOrNil(op.End)}})
		}
	}
	return w
}

// int64JSON reads a 64-bit integer written as a string (proto3 JSON) or,
// leniently, as a number.
type int64JSON int64

func (n *int64JSON) UnmarshalJSON(b []byte) error {
	s := strings.Trim(string(b), `"`)
	if s == "" || s == "null" {
		*n = 0
		return nil
	}
	v, err := strconv.ParseInt(s, 10, 64)
	*n = int64JSON(v)
	return err
}

type kvJSON struct {
	Key         []byte    `json:"key"`
	Value       []byte    `json:"value"`
	ModRevision int64JSON `json:"mod_revision"`
}

type txnResponseJSON struct {
	Header struct {
		Revision int64JSON `json:"revision"`
	} `json:"header"`
	Succeeded bool `json:"succeeded"`
	Responses []struct {
		Range *struct {
			Kvs []kvJSON `json:"kvs"`
		} `json:"response_range"`
	} `json:"responses"`
}

func (w *txnResponseJSON) decode() (TxnResponse, error) {
	if w.Header.Revision == 0 {
		return TxnResponse{}, errors.New("etcd answered a Txn without a header revision")
	}
	out := TxnResponse{Succeeded: w.Succeeded, Revision: int64(w.Header.Revision)}
	for _, r := range w.Responses {
		if r.Range == nil {
			out.Ranges = append(out.Ranges, nil)
			continue
		}
		kvs := make([]KeyValue, 0, len(r.Range.Kvs))
		for _, kv := range r.Range.Kvs {
			kvs = append(kvs, KeyValue{Key: string(kv.Key), Value: kv.Value, ModRevision: int64(kv.ModRevision)})
		}
		out.Ranges = append(out.Ranges, kvs)
	}
	return out, nil
}
