package kv

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestEncodeTxn pins the JSON shape etcd's gateway expects (proto names,
// base64 bytes, 64-bit integers as strings, enums by name); the etcd
// store's conformance tests check it against a real server.
func TestEncodeTxn(t *testing.T) {
	req := TxnRequest{
		Compare: []Cmp{
			{Key: "/duet/blocks/", End: PrefixEnd("/duet/blocks/"), Op: Less, ModRev: 8},
			{Key: "/duet/h/fd00::1", Op: Equal, ModRev: 0},
		},
		Success: []Op{
			{Kind: Range, Key: "/duet/a", Rev: 7, KeysOnly: true},
			{Kind: Put, Key: "/duet/10.0.0.1"},
			{Kind: Delete, Key: "/duet/b"},
		},
	}
	got, err := json.Marshal(encodeTxn(req))
	if err != nil {
		t.Fatal(err)
	}
	want := `{"compare":[` +
		`{"result":"LESS","target":"MOD","key":"L2R1ZXQvYmxvY2tzLw==","range_end":"L2R1ZXQvYmxvY2tzMA==","mod_revision":"8"},` +
		`{"result":"EQUAL","target":"MOD","key":"L2R1ZXQvaC9mZDAwOjox","mod_revision":"0"}],` +
		`"success":[{"request_range":{"key":"L2R1ZXQvYQ==","revision":"7","keys_only":true}},` +
		`{"request_put":{"key":"L2R1ZXQvMTAuMC4wLjE=","value":""}},` +
		`{"request_delete_range":{"key":"L2R1ZXQvYg=="}}]}`
	if string(got) != want {
		t.Errorf("encoded\n%s\nwant\n%s", got, want)
	}
}

func TestPrefixEnd(t *testing.T) {
	for in, want := range map[string]string{"a/": "a0", "a\xff": "b", "\xff\xff": "\x00", "fd00::/": "fd00::0"} {
		if got := PrefixEnd(in); got != want {
			t.Errorf("PrefixEnd(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestDecodeResponse(t *testing.T) {
	body := `{"header":{"cluster_id":"1","revision":"42"},"succeeded":true,"responses":[` +
		`{"response_range":{"header":{"revision":"42"},"kvs":[{"key":"L2R1ZXQvYQ==","create_revision":"3","mod_revision":"40","version":"2","value":"eA=="}],"count":"1"}},` +
		`{"response_range":{"header":{"revision":"42"}}},` +
		`{"response_put":{"header":{"revision":"42"}}}]}`
	var w txnResponseJSON
	if err := json.Unmarshal([]byte(body), &w); err != nil {
		t.Fatal(err)
	}
	r, err := w.decode()
	if err != nil {
		t.Fatal(err)
	}
	if !r.Succeeded || r.Revision != 42 || len(r.Ranges) != 3 {
		t.Fatalf("decoded %+v", r)
	}
	if kv := r.Ranges[0]; len(kv) != 1 || kv[0].Key != "/duet/a" || string(kv[0].Value) != "x" || kv[0].ModRevision != 40 {
		t.Errorf("first range %+v", kv)
	}
	if r.Ranges[1] == nil || len(r.Ranges[1]) != 0 || r.Ranges[2] != nil {
		t.Errorf("empty range must be empty, a put's entry nil: %+v", r.Ranges)
	}
}

// TestGatewayErrors checks that etcd's verdicts keep their code (so the
// store can tell "compacted" and "not allowed" from "unreachable"), and
// that a URL without etcd behind it says so.
func TestGatewayErrors(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path != "/v3/kv/txn":
			http.NotFound(w, r)
		case r.Header.Get("X-Case") == "compacted":
			w.WriteHeader(http.StatusBadRequest)
			io.WriteString(w, `{"error":"etcdserver: mvcc: required revision has been compacted","code":11,"message":"etcdserver: mvcc: required revision has been compacted"}`)
		default:
			w.WriteHeader(http.StatusForbidden)
			io.WriteString(w, `{"code":7,"message":"etcdserver: permission denied"}`)
		}
	}))
	defer srv.Close()
	g, err := NewGateway([]string{srv.URL}, time.Second, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	_, err = g.Txn(context.Background(), TxnRequest{})
	var e *Error
	if !errors.As(err, &e) || e.Code != PermissionDenied || !Permanent(err) {
		t.Errorf("permission denied: %v, want a permanent *Error with code PermissionDenied", err)
	}
	// A server that is not etcd (no /v3/kv/txn).
	g2, _ := NewGateway([]string{srv.URL + "/not-etcd"}, time.Second, nil, nil)
	_, err = g2.Txn(context.Background(), TxnRequest{})
	if !Permanent(err) || !strings.Contains(err.Error(), "gateway") {
		t.Errorf("no gateway: %v, want a permanent error naming the gateway", err)
	}
	compacted := &Error{Code: OutOfRange, Message: "etcdserver: mvcc: required revision has been compacted"}
	if !compacted.Compacted() || Permanent(compacted) {
		t.Errorf("compacted must be retried, not permanent")
	}
}

// TestGatewayFailover checks that an endpoint nobody listens on is skipped
// (the request never left) and the answering one is remembered.
func TestGatewayFailover(t *testing.T) {
	var calls int
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls++
		io.WriteString(w, `{"header":{"revision":"5"},"succeeded":true}`)
	}))
	defer srv.Close()
	l, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		l, err = net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
	}
	dead := "http://" + l.Addr().String()
	l.Close()
	g, err := NewGateway([]string{dead, strings.TrimPrefix(srv.URL, "http://")}, time.Second, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	for range 2 {
		r, err := g.Txn(context.Background(), TxnRequest{})
		if err != nil || r.Revision != 5 || !r.Succeeded {
			t.Fatalf("Txn = %+v, %v", r, err)
		}
	}
	if calls != 2 || g.next.Load() != 1 {
		t.Errorf("calls %d, next %d: want 2 calls and the live endpoint remembered", calls, g.next.Load())
	}
	// Every endpoint down: one line naming each, still classified.
	l2, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead2 := "http://" + l2.Addr().String()
	l2.Close()
	g2, _ := NewGateway([]string{dead, dead2}, time.Second, nil, nil)
	_, err = g2.Txn(context.Background(), TxnRequest{})
	if err == nil || strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), strings.TrimPrefix(dead2, "http://")) || Permanent(err) || !dialFailed(err) {
		t.Errorf("all endpoints down: %q, want one transient line naming each", err)
	}
	if _, err := NewGateway([]string{"unix:///run/etcd.sock"}, time.Second, nil, nil); err == nil {
		t.Error("a unix:// endpoint was accepted")
	}
}
