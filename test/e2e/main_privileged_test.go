// Package e2e drives the real duet, duet-ipam and duetctl binaries through
// libcni, the way a container runtime does, against network namespaces on
// this host: addresses and routes in the kernel, pings and TCP both ways
// and in both families, CHECK, DEL, GC, 64 concurrent ADDs, ADDs killed
// with SIGKILL, bad input, zero configuration, and duet-ipam under the
// reference bridge and ptp plugins.
//
// Privileged tests: run as root (Debian 12 with iproute2, iputils-ping,
// nftables and containernetworking-plugins in /usr/lib/cni):
//
//	go test ./test/e2e/
//
// Without root they skip, or fail when the CI variable is set. TestMain
// builds the binaries from this tree into a temporary directory, so a stale
// bin/ is never tested. Every test uses its own namespaces, network name,
// datastore under t.TempDir(), and addresses in fd00:e2e::/32 and
// 10.250.128.0/18 (the other privileged tests of this module use
// fd00:dead::/32 and other parts of 10.250.0.0/16), and removes all of it
// in t.Cleanup, also on failure.
package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// binDir holds the freshly built duet, duet-ipam and duetctl.
var binDir string

// refPluginDir holds the reference CNI plugins (Debian's
// containernetworking-plugins).
const refPluginDir = "/usr/lib/cni"

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	if os.Geteuid() != 0 {
		return m.Run() // every test calls kerneltest.RequireRoot
	}
	dir, err := os.MkdirTemp("", "duet-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	if err := build(dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	binDir = dir
	before := nftTables()
	code := m.Run()
	// duet creates its nftables tables on the first ADD and never removes
	// them (the pools' NAT elements stay too): drop them if this run made
	// them, so the host is left as it was found.
	for _, table := range []string{"inet duet", "bridge duet"} {
		if !before[table] && nftTables()[table] {
			if out, err := exec.Command("nft", "delete", "table", strings.Fields(table)[0], "duet").CombinedOutput(); err != nil {
				fmt.Fprintf(os.Stderr, "nft delete table %s: %v: %s\n", table, err, out)
			}
		}
	}
	return code
}

// build compiles the three binaries from this module into dir.
func build(dir string) error {
	root, err := filepath.Abs("../..")
	if err != nil {
		return err
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = "/usr/local/go/bin/go"
	}
	cmd := exec.Command(goBin, "build", "-o", dir+string(filepath.Separator), "./cmd/duet", "./cmd/duet-ipam", "./cmd/duetctl")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build the plugins: %v\n%s", err, out)
	}
	return nil
}

// nftTables lists the host's nftables tables as "family name".
func nftTables() map[string]bool {
	out, _ := exec.Command("nft", "list", "tables").Output()
	tables := map[string]bool{}
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[0] == "table" {
			tables[f[1]+" "+f[2]] = true
		}
	}
	return tables
}
