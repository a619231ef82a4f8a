package hardening

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/duetnet/duet/internal/cni"
	"github.com/duetnet/duet/internal/ipam"
)

// The "host" namespace's own addresses (on lo), the destination of the
// packets aimed at the host.
var (
	hostAddr6 = netip.MustParseAddr("2001:db8:fffe::1")
	hostAddr4 = netip.MustParseAddr("198.19.0.1")
)

const (
	routed = "routed"
	bridge = "bridge"
)

var modes = []string{routed, bridge}

var poolSeq atomic.Int32

// env is one test's host: a namespace the plugin runs in, its own datastore
// file and CNI cache, and pools no other test uses.
type env struct {
	host *netNS
	dir  string
	cni  *libcni.CNIConfig
	idx  int
}

func newEnv(t *testing.T, tools ...string) *env {
	t.Helper()
	requireTools(t, tools...)
	e := &env{dir: t.TempDir(), idx: int(poolSeq.Add(1))%250 + 1}
	e.host = newNetNS(t, "host")
	e.host.ip(t, "addr", "add", hostAddr6.String()+"/128", "dev", "lo")
	e.host.ip(t, "addr", "add", hostAddr4.String()+"/32", "dev", "lo")
	// The plugin's standard error (its log: sysctl changes, GC) goes to the
	// test's log rather than the terminal.
	ex := &invoke.DefaultExec{RawExec: &invoke.RawExec{Stderr: logWriter{t}}, PluginDecoder: version.PluginDecoder{}}
	e.cni = libcni.NewCNIConfigWithCacheDir([]string{pluginDir}, filepath.Join(e.dir, "cache"), ex)
	return e
}

// logWriter writes to a test's log.
type logWriter struct{ t *testing.T }

func (w logWriter) Write(p []byte) (int, error) {
	w.t.Logf("plugin: %s", strings.TrimSpace(string(p)))
	return len(p), nil
}

// Pools in test ranges, distinct per env. "Global" IPv6 is documentation
// space, which duet treats as global (it is outside fc00::/7).
func (e *env) ula() string      { return fmt.Sprintf("fd00:4a:%x::/48", e.idx) }
func (e *env) private4() string { return fmt.Sprintf("10.249.%d.0/24", e.idx) }
func (e *env) global6() string  { return fmt.Sprintf("2001:db8:%x::/48", e.idx) }

// network is one duet network configuration.
type network struct {
	Name, Mode, Bridge string
	plugin             map[string]any
	list               *libcni.NetworkConfigList
}

// network builds a configuration; extra keys (protections,
// allowedSourcePrefixes) go into the plugin's object.
func (e *env) network(t *testing.T, mode, families string, pools []string, extra map[string]any) *network {
	t.Helper()
	nw := &network{Name: fmt.Sprintf("hardening-%s-%d", token, seq.Add(1)), Mode: mode}
	var ps []map[string]any
	for _, p := range pools {
		ps = append(ps, map[string]any{"cidr": p})
	}
	nw.plugin = map[string]any{"type": "duet", "mode": mode, "families": families, "pools": ps, "nodeName": "hardening",
		"datastore": map[string]any{"type": "bolt", "path": filepath.Join(e.dir, nw.Name+".db")}}
	if mode == bridge {
		nw.Bridge = fmt.Sprintf("dhb%s%d", token, seq.Add(1))
		made.Store(nw.Bridge, true)
		nw.plugin["bridge"] = nw.Bridge
	}
	for k, v := range extra {
		nw.plugin[k] = v
	}
	conf, err := json.Marshal(map[string]any{"cniVersion": "1.1.0", "name": nw.Name, "plugins": []any{nw.plugin}})
	if err != nil {
		t.Fatal(err)
	}
	if nw.list, err = libcni.NetworkConfFromBytes(conf); err != nil {
		t.Fatal(err)
	}
	return nw
}

// pod is one attachment made by a CNI ADD.
type pod struct {
	ID, IfName, HostIf string
	NS                 *netNS
	Args               [][2]string
	// MAC is the pod interface's; GwMAC is the next hop's for everything
	// the pod sends off-link (the host end, or the bridge).
	MAC, GwMAC net.HardwareAddr
	LL         netip.Addr
	IPs        []netip.Addr
	// GWs are the gateways of the pod's addresses, in the same order.
	GWs []netip.Addr
}

func (p *pod) rt() *libcni.RuntimeConf {
	return &libcni.RuntimeConf{ContainerID: p.ID, NetNS: p.NS.Path, IfName: p.IfName, Args: p.Args}
}

// addr is the pod's address of family 6 or 4.
func (p *pod) addr(t *testing.T, fam int) netip.Addr {
	t.Helper()
	return p.IPs[p.index(t, fam)]
}

// gw is the gateway of the pod's address of family 6 or 4.
func (p *pod) gw(t *testing.T, fam int) netip.Addr {
	t.Helper()
	return p.GWs[p.index(t, fam)]
}

func (p *pod) index(t *testing.T, fam int) int {
	t.Helper()
	for i, a := range p.IPs {
		if a.Is4() == (fam == 4) {
			return i
		}
	}
	t.Fatalf("pod %s has no IPv%d address (%v)", p.ID, fam, p.IPs)
	return 0
}

// add makes a pod namespace and ADDs it to nw, failing the test on error.
func (e *env) add(t *testing.T, nw *network, args ...[2]string) *pod {
	t.Helper()
	p, err := e.tryAdd(t, nw, newNetNS(t, "pod"), args...)
	if err != nil {
		t.Fatalf("ADD %s: %v", p.ID, err)
	}
	return p
}

// tryAdd ADDs podNS to nw from inside the host namespace. A DEL in
// t.Cleanup (before the namespaces go) undoes it, even when it failed.
func (e *env) tryAdd(t *testing.T, nw *network, podNS *netNS, args ...[2]string) (*pod, error) {
	t.Helper()
	p := &pod{ID: podNS.Name, IfName: "eth0", NS: podNS, Args: args, HostIf: hostIfName(nw, podNS)}
	t.Cleanup(func() {
		if err := e.del(t, nw, p); err != nil {
			t.Errorf("cleanup: DEL %s: %v", p.ID, err)
		}
	})
	var r types.Result
	var err error
	e.host.do(t, func() error { r, err = e.cni.AddNetworkList(context.Background(), nw.list, p.rt()); return nil })
	if err != nil {
		return p, err
	}
	res, err := current.NewResultFromResult(r)
	if err != nil {
		t.Fatal(err)
	}
	var hostMAC, bridgeMAC net.HardwareAddr
	for _, i := range res.Interfaces {
		mac, _ := net.ParseMAC(i.Mac)
		switch {
		case i.Sandbox != "":
			p.MAC = mac
		case i.Name == p.HostIf:
			hostMAC = mac
		case nw.Bridge != "" && i.Name == nw.Bridge:
			bridgeMAC = mac
		}
	}
	p.GwMAC = hostMAC
	if nw.Mode == bridge {
		p.GwMAC = bridgeMAC
	}
	if p.MAC == nil || p.GwMAC == nil {
		t.Fatalf("ADD result lacks the pod's or the gateway's MAC: %+v", res.Interfaces)
	}
	p.LL = linkLocal(p.MAC)
	for _, ip := range res.IPs {
		a, _ := netip.AddrFromSlice(ip.Address.IP)
		gw, _ := netip.AddrFromSlice(ip.Gateway)
		p.IPs, p.GWs = append(p.IPs, a.Unmap()), append(p.GWs, gw.Unmap())
	}
	return p, nil
}

// hostIfName is the name duet gives the host end of podNS's eth0 in nw.
func hostIfName(nw *network, podNS *netNS) string {
	name := cni.HostIfName(ipam.Handle{Network: nw.Name, ContainerID: podNS.Name, IfName: "eth0"})
	made.Store(name, true)
	return name
}

// del is CNI DEL from inside the host namespace.
func (e *env) del(t *testing.T, nw *network, p *pod) error {
	var err error
	e.host.do(t, func() error { err = e.cni.DelNetworkList(context.Background(), nw.list, p.rt()); return nil })
	return err
}

// gcLibcni is CNI GC as a runtime using libcni issues it.
func (e *env) gcLibcni(t *testing.T, nw *network, valid ...*pod) error {
	var args libcni.GCArgs
	for _, p := range valid {
		args.ValidAttachments = append(args.ValidAttachments, types.GCAttachment{ContainerID: p.ID, IfName: p.IfName})
	}
	var err error
	e.host.do(t, func() error { err = e.cni.GCNetworkList(context.Background(), nw.list, &args); return nil })
	return err
}

// gcSpec runs the plugin's GC with exactly the configuration the CNI 1.1
// spec describes (cni.dev/valid-attachments only), without libcni, so the
// plugin's own GC does the freeing (no cached attachment to DEL first).
func (e *env) gcSpec(t *testing.T, nw *network, valid ...*pod) error {
	conf := map[string]any{"cniVersion": "1.1.0", "name": nw.Name}
	for k, v := range nw.plugin {
		conf[k] = v
	}
	att := []map[string]string{}
	for _, p := range valid {
		att = append(att, map[string]string{"containerID": p.ID, "ifname": p.IfName})
	}
	conf["cni.dev/valid-attachments"] = att
	stdin, _ := json.Marshal(conf)
	var err error
	e.host.do(t, func() error {
		cmd := exec.Command(filepath.Join(pluginDir, "duet"))
		cmd.Env = append(os.Environ(), "CNI_COMMAND=GC", "CNI_PATH="+pluginDir)
		cmd.Stdin = bytes.NewReader(stdin)
		if out, cerr := cmd.CombinedOutput(); cerr != nil {
			err = fmt.Errorf("%v: %s", cerr, out)
		}
		return nil
	})
	return err
}

// linkLocal is the EUI-64 link-local address of mac.
func linkLocal(mac net.HardwareAddr) netip.Addr {
	b := [16]byte{0xfe, 0x80}
	b[8], b[9], b[10], b[11], b[12] = mac[0]^2, mac[1], mac[2], 0xff, 0xfe
	b[13], b[14], b[15] = mac[3], mac[4], mac[5]
	return netip.AddrFrom16(b)
}
