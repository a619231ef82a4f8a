// Privileged: run as root with `go test -run Etcd ./cmd/duetd/`. Runs a
// store host (duetd --embed-etcd --etcd-only on [::1]) and two agents on
// it, all in one throwaway namespace.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/duetnet/duet/internal/kernel/kerneltest"
)

// lockedBuffer collects a process's stderr, shown when the test fails.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestEtcdStoreHostAndAgents: the agents register in the embedded etcd,
// and with an hour's --interval the first learns of the second through
// the watch alone.
func TestEtcdStoreHostAndAgents(t *testing.T) {
	kerneltest.RequireRoot(t)
	dir := t.TempDir()
	if out, err := exec.Command("go", "build", "-o", dir+"/duetd", ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	name := kerneltest.NetNSName(kerneltest.NetNS(t))
	kerneltest.Run(t, "ip", "-n", name, "link", "set", "lo", "up")
	start := func(label string, args ...string) {
		t.Helper()
		var logs lockedBuffer
		cmd := exec.Command("ip", append([]string{"netns", "exec", name, dir + "/duetd"}, args...)...)
		cmd.Stderr = &logs
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			if t.Failed() {
				t.Logf("%s's log:\n%s", label, logs.String())
			}
		})
	}
	const endpoint = "http://[::1]:2379" // the namespace is ours: the port is free
	start("store host", "--embed-etcd", filepath.Join(dir, "etcd"), "--etcd-only", "--etcd-listen", endpoint, "--http", "")
	agent := func(node, addr string) string {
		sock := filepath.Join(dir, node+".sock")
		start(node, "--node-name", node, "--address", addr, "--etcd-endpoints", endpoint,
			"--socket", sock, "--http", "", "--interval", "1h")
		return sock
	}
	sock1 := agent("t1", "fd00:7e57::1")
	// t1 may start before etcd serves: it retries, and is in the store
	// once its first sync went through.
	waitStatus(t, sock1, 30*time.Second, func(st statusView) bool { return st.Node.Name == "t1" && slices.Contains(st.names(), "t1") })
	agent("t2", "fd00:7e57::2")
	// t1's next poll is an hour away: only the watch can tell it.
	waitStatus(t, sock1, 10*time.Second, func(st statusView) bool { return slices.Contains(st.names(), "t2") })
}

type statusView struct {
	Node struct {
		Name string `json:"name"`
	} `json:"node"`
	Nodes []struct {
		Name string `json:"name"`
	} `json:"nodes"`
	LastError string `json:"lastError"`
}

func (s statusView) names() []string {
	var out []string
	for _, n := range s.Nodes {
		out = append(out, n.Name)
	}
	return out
}

// waitStatus polls duetd's status socket until ok or the timeout.
func waitStatus(t *testing.T, sock string, timeout time.Duration, ok func(statusView) bool) {
	t.Helper()
	c := http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
	var last statusView
	var lastErr error
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		resp, err := c.Get("http://duetd/status")
		if err != nil {
			lastErr = err
			continue
		}
		last = statusView{}
		lastErr = json.NewDecoder(resp.Body).Decode(&last)
		resp.Body.Close()
		if lastErr == nil && ok(last) {
			return
		}
	}
	t.Fatalf("status of %s after %s: %+v (err %v)", sock, timeout, last, lastErr)
}
