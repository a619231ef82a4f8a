// Privileged: run as root with `go test ./cmd/duetd/`. Starts the real
// duetd in a namespace and reads its /healthz, /metrics and status socket.
package main

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"

	"github.com/duetnet/duet/internal/kernel/kerneltest"
)

func TestDuetdServes(t *testing.T) {
	kerneltest.RequireRoot(t)
	dir := t.TempDir()
	if out, err := exec.Command("go", "build", "-o", dir+"/duetd", ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	nsPath := kerneltest.NetNS(t)
	name := kerneltest.NetNSName(nsPath)
	kerneltest.Run(t, "ip", "-n", name, "link", "set", "lo", "up")
	sock := filepath.Join(dir, "duetd.sock")
	cmd := exec.Command("ip", "netns", "exec", name, dir+"/duetd", "--node-name", "t1", "--address", "fd00:7e57::1,10.247.0.1",
		"--datastore-path", filepath.Join(dir, "duet.db"), "--socket", sock, "--http", "127.0.0.1:9641", "--interval", "100ms")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	h, err := ns.GetNS(nsPath)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	get := func(url string) (int, string) {
		var code int
		var body string
		for try := 0; try < 50; try++ {
			err := h.Do(func(ns.NetNS) error {
				c, err := net.DialTimeout("tcp", "127.0.0.1:9641", time.Second)
				if err != nil {
					return err
				}
				c.Close()
				return nil
			})
			if err == nil {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		client := http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DialContext: func(ctx context.Context, network, addr string) (c net.Conn, err error) {
			err = h.Do(func(ns.NetNS) error { c, err = (&net.Dialer{}).DialContext(ctx, network, addr); return err })
			return c, err
		}}}
		resp, err := client.Get(url)
		if err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		code, body = resp.StatusCode, string(b)
		return code, body
	}
	time.Sleep(300 * time.Millisecond) // a few syncs
	if code, body := get("http://127.0.0.1:9641/healthz"); code != 200 || !strings.Contains(body, "ok") {
		t.Errorf("/healthz: %d %q", code, body)
	}
	if _, body := get("http://127.0.0.1:9641/metrics"); !strings.Contains(body, `duet_agent_syncs_total{result="ok"}`) {
		t.Errorf("/metrics lacks the sync counter:\n%s", body)
	}
	c := http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
	resp, err := c.Get("http://duetd/status")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st struct {
		Node struct {
			Name  string   `json:"name"`
			Addrs []string `json:"addrs"`
		} `json:"node"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil || st.Node.Name != "t1" || len(st.Node.Addrs) != 2 || st.Node.Addrs[0] != "fd00:7e57::1" {
		t.Fatalf("status: %+v %v", st, err)
	}
}
