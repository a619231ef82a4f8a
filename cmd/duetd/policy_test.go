package main

import (
	"context"
	"encoding/json"
	"flag"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/duetnet/duet/internal/kube"
)

// fakePods answers Pod from a map; nil means not synced yet.
type fakePods map[string]kube.PodPolicy

var _ podPolicies = fakePods(nil)

func (f fakePods) Pod(ns, name string) (kube.PodPolicy, error) {
	if f == nil {
		return kube.PodPolicy{}, kube.ErrNotSynced
	}
	pp, ok := f[ns+"/"+name]
	if !ok {
		return kube.PodPolicy{Pod: ns + "/" + name, Explain: "pod " + ns + "/" + name + ": unknown\n", Compiled: time.Now()}, nil
	}
	return pp, nil
}

func TestPolicyHandler(t *testing.T) {
	web := kube.PodPolicy{Pod: "prod/web", Node: "node1", Here: true, Compiled: time.Now(),
		Explain: "pod prod/web: fd00:10::10\ningress: isolated by prod/deny\n  no rule allows anything in\n"}
	for _, c := range []struct {
		name  string
		src   podPolicies
		query string
		code  int
		body  string
	}{
		{"off", nil, "?pod=prod/web", http.StatusNotFound, "--network-policy"},
		{"not synced", fakePods(nil), "?pod=prod/web", http.StatusServiceUnavailable, "waiting for the first list"},
		{"no pod", fakePods{}, "", http.StatusBadRequest, "?pod=NAMESPACE/NAME"},
		{"no namespace", fakePods{}, "?pod=web", http.StatusBadRequest, "?pod=NAMESPACE/NAME"},
		{"text", fakePods{"prod/web": web}, "?pod=prod/web", http.StatusOK, "ingress: isolated by prod/deny\n  no rule allows anything in\nenforced here, on node node1"},
		{"unknown", fakePods{"prod/web": web}, "?pod=prod/nope", http.StatusOK, "pod prod/nope: unknown\n"},
		{"json", fakePods{"prod/web": web}, "?pod=prod/web&format=json", http.StatusOK, `"pod":"prod/web","node":"node1","here":true`},
	} {
		rec := httptest.NewRecorder()
		policyHandler(c.src).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/policy"+c.query, nil))
		if rec.Code != c.code || !strings.Contains(rec.Body.String(), c.body) {
			t.Errorf("%s: %d %q, want %d and %q", c.name, rec.Code, rec.Body, c.code, c.body)
		}
	}
	rec := httptest.NewRecorder()
	policyHandler(fakePods{"prod/web": web}).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/policy?pod=prod/web&format=json", nil))
	var got kube.PodPolicy
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil || got.Explain != web.Explain || !got.Here {
		t.Errorf("JSON does not round-trip: %v %+v", err, got)
	}
}

// TestPolicySocket: /policy is on duetd's socket beside /status, and
// says how to turn it on when --network-policy is off.
func TestPolicySocket(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "duetd.sock")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var off *policyController
	if err := serveSocket(ctx, sock, nil, off.routes); err != nil {
		t.Fatal(err)
	}
	c := http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
	resp, err := c.Get("http://duetd/policy?pod=prod/web")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusNotFound || !strings.Contains(string(b), "--kubernetes --network-policy") {
		t.Errorf("%d %s", resp.StatusCode, b)
	}
}

func TestPolicyFlag(t *testing.T) {
	f := kubeFlags{}
	err := f.check(map[string]bool{"network-policy": true}, "/var/lib/duet/duet.db")
	if err == nil || !strings.HasPrefix(err.Error(), "--network-policy") || !strings.Contains(err.Error(), "--kubernetes") {
		t.Errorf("--network-policy without --kubernetes: %v", err)
	}
	var on bool
	fs := flag.NewFlagSet("duetd", flag.ContinueOnError)
	registerPolicyFlag(fs, &on)
	if err := fs.Parse([]string{"--network-policy"}); err != nil || !on {
		t.Errorf("--network-policy: %v %v", on, err)
	}
	if u := fs.Lookup("network-policy"); u == nil || u.DefValue != "false" || !strings.Contains(u.Usage, "Netpol") {
		t.Errorf("off by default, and the help says why: %+v", u)
	}
}
