package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/containernetworking/cni/libcni"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/spf13/cobra"

	"github.com/duetnet/duet/internal/store"
)

// demoConf is a zero-configuration duet network: no pools, no families,
// no MTU; duet picks a random ULA /48 and a free 10.x/16 itself.
const demoConf = `{"cniVersion": "1.1.0", "name": "duet-demo", "plugins": [{"type": "duet", "datastore": {"path": %q}}]}`

func demoCmd() *cobra.Command {
	var keep bool
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Create two containers (network namespaces) with duet and show IPv6 and IPv4 working between them",
		RunE:  func(cmd *cobra.Command, _ []string) error { return runDemo(keep) },
	}
	cmd.Flags().BoolVar(&keep, "keep", false, "leave the namespaces in place")
	return cmd
}

func runDemo(keep bool) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	binDir := filepath.Dir(self)
	if _, err := os.Stat(filepath.Join(binDir, "duet")); err != nil {
		return fmt.Errorf("the duet plugin is not next to duetctl in %s: run make build", binDir)
	}
	dir, err := os.MkdirTemp("", "duet-demo-")
	if err != nil {
		return err
	}
	dbPath := filepath.Join(dir, "duet.db")
	list, err := libcni.ConfListFromBytes([]byte(fmt.Sprintf(demoConf, dbPath)))
	if err != nil {
		return err
	}
	cni := libcni.NewCNIConfig([]string{binDir}, nil)
	ctx := context.Background()
	pods := []string{"duet-demo-a", "duet-demo-b"}
	results := map[string]*current.Result{}
	cleanup := func() {
		for _, p := range pods {
			rt := &libcni.RuntimeConf{ContainerID: p, NetNS: "/var/run/netns/" + p, IfName: "eth0"}
			_ = cni.DelNetworkList(ctx, list, rt)
			_ = exec.Command("ip", "netns", "del", p).Run()
		}
		os.RemoveAll(dir)
	}
	if !keep {
		defer cleanup()
	}
	step("Configuration (no pools, no families, no MTU: zero configuration)")
	fmt.Println(strings.TrimSpace(fmt.Sprintf(demoConf, dbPath)))
	for _, p := range pods {
		_ = exec.Command("ip", "netns", "del", p).Run()
		if out, err := exec.Command("ip", "netns", "add", p).CombinedOutput(); err != nil {
			return fmt.Errorf("ip netns add %s: %v: %s", p, err, out)
		}
		rt := &libcni.RuntimeConf{ContainerID: p, NetNS: "/var/run/netns/" + p, IfName: "eth0"}
		start := time.Now()
		r, err := cni.AddNetworkList(ctx, list, rt)
		if err != nil {
			return fmt.Errorf("CNI ADD %s: %w", p, err)
		}
		res, err := current.NewResultFromResult(r)
		if err != nil {
			return err
		}
		results[p] = res
		step(fmt.Sprintf("ADD %s took %v", p, time.Since(start).Round(time.Millisecond)))
		for _, ip := range res.IPs {
			fmt.Printf("  %-28s gateway %s\n", ip.Address.String(), ip.Gateway)
		}
		show("ip", "netns", "exec", p, "ip", "-br", "addr", "show", "eth0")
		show("ip", "netns", "exec", p, "ip", "-6", "route")
		show("ip", "netns", "exec", p, "ip", "-4", "route")
	}
	step("The store (duetctl ipam show)")
	_ = withStoreRO(dbPath)
	failed := 0
	for _, from := range pods {
		for _, to := range pods {
			if from == to {
				continue
			}
			for _, ip := range results[to].IPs {
				addr := ip.Address.IP.String()
				step(fmt.Sprintf("%s -> %s %s (first packet, no retry)", from, to, addr))
				if !show("ip", "netns", "exec", from, "ping", "-c", "1", "-W", "2", addr) {
					failed++
				}
			}
		}
	}
	for _, ip := range results[pods[0]].IPs {
		step(fmt.Sprintf("host -> %s %s", pods[0], ip.Address.IP))
		if !show("ping", "-c", "1", "-W", "2", ip.Address.IP.String()) {
			failed++
		}
	}
	if failed > 0 {
		return fmt.Errorf("%d pings failed", failed)
	}
	step("Both families work between the two containers and the host.")
	if keep {
		fmt.Printf("Namespaces kept: %v; datastore %s\n", pods, dbPath)
	}
	return nil
}

func withStoreRO(path string) error {
	sf := storeFlags{path: path}
	return sf.update(func(tx store.Tx) error { return showIPAM(tx, false) })
}

func step(s string) { fmt.Printf("\n== %s\n", s) }

func show(name string, args ...string) bool {
	out, err := exec.Command(name, args...).CombinedOutput()
	fmt.Print(indent(string(out)))
	return err == nil
}

func indent(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return "  " + strings.Join(lines, "\n  ") + "\n"
}
