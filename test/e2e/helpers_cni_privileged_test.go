// Helpers that run the plugins: through libcni as a runtime does, or by
// exec with CNI_* variables and the configuration on stdin, to kill them or
// read their raw errors.
//
// Privileged: run as root with
//
//	go test ./test/e2e/
//
// (see main_privileged_test.go).

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"

	"github.com/duetnet/duet/internal/cni"
	"github.com/duetnet/duet/internal/ipam"
	"github.com/duetnet/duet/internal/kernel/kerneltest"
)

// network is one CNI network: a configuration list with one plugin, its
// own datastore file and its own libcni cache, both under t.TempDir().
type network struct {
	name  string
	list  *libcni.NetworkConfigList
	conf  map[string]any // the plugin's configuration, as exec'd on stdin
	store string         // bolt datastore path
	cni   *libcni.CNIConfig
}

// duetNetwork makes a duet network (CNI 1.1.0) from extra plugin keys;
// "type" and "datastore" are filled in.
func duetNetwork(t *testing.T, keys map[string]any) *network {
	t.Helper()
	store := filepath.Join(t.TempDir(), "duet.db")
	conf := map[string]any{"type": "duet", "datastore": map[string]any{"path": store}}
	maps.Copy(conf, keys)
	return newNetwork(t, "1.1.0", conf, store)
}

// newNetwork wraps one plugin configuration in a list named e2e-<random>.
func newNetwork(t *testing.T, version string, plugin map[string]any, store string) *network {
	t.Helper()
	name := kerneltest.Name("e2e-")
	raw, err := json.Marshal(map[string]any{"cniVersion": version, "name": name, "plugins": []any{plugin}})
	if err != nil {
		t.Fatal(err)
	}
	list, err := libcni.ConfListFromBytes(raw)
	if err != nil {
		t.Fatalf("libcni rejects %s: %v", raw, err)
	}
	conf := maps.Clone(plugin)
	conf["cniVersion"], conf["name"] = version, name
	return &network{
		name:  name,
		list:  list,
		conf:  conf,
		store: store,
		cni:   libcni.NewCNIConfigWithCacheDir([]string{binDir, refPluginDir}, filepath.Join(t.TempDir(), "cni-cache"), nil),
	}
}

// pod is one attachment: a network namespace and the CNI arguments for it.
type pod struct {
	id     string // CNI_CONTAINERID
	ns     string // name for "ip netns exec"
	path   string // CNI_NETNS
	ifName string
	res    *current.Result // set by add
}

func containerID() string { return fmt.Sprintf("e2e-%016x", rand.Uint64()) }

// newPod makes a namespace for a pod of n. Cleanup runs CNI DEL (which
// succeeds when there is nothing to remove) before the namespace goes, so
// a failed test leaves no veth, allocation or nftables element behind.
func (n *network) newPod(t *testing.T) *pod {
	t.Helper()
	path := kerneltest.NetNS(t)
	p := &pod{id: containerID(), ns: kerneltest.NetNSName(path), path: path, ifName: "eth0"}
	t.Cleanup(func() {
		if err := n.cni.DelNetworkList(context.Background(), n.list, p.rt()); err != nil {
			t.Logf("cleanup DEL %s: %v", p.id, err)
		}
	})
	return p
}

func (p *pod) rt() *libcni.RuntimeConf {
	return &libcni.RuntimeConf{ContainerID: p.id, NetNS: p.path, IfName: p.ifName}
}

// handle is the pod's key in duet's store.
func (p *pod) handle(n *network) ipam.Handle {
	return ipam.Handle{Network: n.name, ContainerID: p.id, IfName: p.ifName}
}

// hostIf is the name duet gives the host end of the pod's veth.
func (p *pod) hostIf(n *network) string { return cni.HostIfName(p.handle(n)) }

// addr returns the pod's address of a family from its ADD result.
func (p *pod) addr(v6 bool) (netip.Addr, bool) {
	if p.res == nil {
		return netip.Addr{}, false
	}
	for _, ip := range p.res.IPs {
		a, ok := netip.AddrFromSlice(ip.Address.IP)
		if ok && a.Unmap().Is6() == v6 {
			return a.Unmap(), true
		}
	}
	return netip.Addr{}, false
}

// tryAdd runs CNI ADD; it is safe to call from several goroutines.
func (n *network) tryAdd(p *pod) error {
	r, err := n.cni.AddNetworkList(context.Background(), n.list, p.rt())
	if err != nil {
		return fmt.Errorf("ADD %s: %w", p.id, err)
	}
	if p.res, err = current.NewResultFromResult(r); err != nil {
		return fmt.Errorf("ADD %s: result: %w", p.id, err)
	}
	return nil
}

func (n *network) add(t *testing.T, p *pod) *current.Result {
	t.Helper()
	if err := n.tryAdd(p); err != nil {
		t.Fatal(err)
	}
	return p.res
}

func (n *network) check(p *pod) error {
	return n.cni.CheckNetworkList(context.Background(), n.list, p.rt())
}

func (n *network) del(t *testing.T, p *pod) {
	t.Helper()
	if err := n.cni.DelNetworkList(context.Background(), n.list, p.rt()); err != nil {
		t.Fatalf("DEL %s: %v", p.id, err)
	}
}

// cniError is the JSON a plugin prints on failure.
type cniError struct {
	Code    uint   `json:"code"`
	Msg     string `json:"msg"`
	Details string `json:"details"`
}

// execCmd prepares the duet binary (or another plugin of binDir) for one
// CNI command, with conf on stdin, as a runtime runs it.
func execCmd(plugin, command, id, netns, ifName string, conf []byte) *exec.Cmd {
	cmd := exec.Command(filepath.Join(binDir, plugin))
	cmd.Env = append(os.Environ(),
		"CNI_COMMAND="+command, "CNI_CONTAINERID="+id, "CNI_NETNS="+netns,
		"CNI_IFNAME="+ifName, "CNI_PATH="+binDir+":"+refPluginDir)
	cmd.Stdin = bytes.NewReader(conf)
	return cmd
}

// execFail runs a command that must fail and returns the CNI error it
// printed.
func execFail(t *testing.T, cmd *exec.Cmd) cniError {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err == nil {
		t.Fatalf("%s with %s succeeded, want an error; stdout: %s", cmd.Path, strings.Join(cmd.Env[len(cmd.Env)-5:], " "), stdout.String())
	}
	var e cniError
	if jerr := json.Unmarshal(stdout.Bytes(), &e); jerr != nil || e.Code == 0 {
		t.Fatalf("stdout is not a CNI error (%v): %q; stderr: %s", jerr, stdout.String(), stderr.String())
	}
	return e
}

// jsonBytes marshals v, failing the test on error.
func jsonBytes(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// errCode returns the CNI code of an error from libcni, or 0.
func errCode(err error) uint {
	var e *types.Error
	if errors.As(err, &e) {
		return e.Code
	}
	return 0
}

// families lists the IPv6-first families of a "families" value.
func families(fam string) []bool {
	switch fam {
	case "ipv6":
		return []bool{true}
	case "ipv4":
		return []bool{false}
	}
	return []bool{true, false}
}

// testPools are test n's pools for fam, IPv6 first: fd00:e2e:<n>::/64 and
// 10.250.<128+n>.0/24 (the other privileged tests of this module use
// fd00:dead::/32 and the rest of 10.250.0.0/16).
func testPools(fam string, n int) []any {
	var out []any
	for _, v6 := range families(fam) {
		out = append(out, map[string]any{"cidr": testPool(v6, n).String()})
	}
	return out
}

func testPool(v6 bool, n int) netip.Prefix {
	if v6 {
		return netip.MustParsePrefix(fmt.Sprintf("fd00:e2e:%x::/64", n))
	}
	return netip.MustParsePrefix(fmt.Sprintf("10.250.%d.0/24", 128+n))
}

func famName(v6 bool) string {
	if v6 {
		return "IPv6"
	}
	return "IPv4"
}

// contains reports whether s contains every one of subs.
func contains(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}
