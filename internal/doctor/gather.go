package doctor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"time"
)

// Gatherer reads the facts of the network namespace it runs in: sysctls
// from /proc/sys, links, addresses, routes and proxy entries from
// iproute2's JSON output, the firewall from nft and iptables-save. For
// another namespace, run the doctor there: ip netns exec NS duetctl doctor
// --host. Run and ReadFile are replaceable for tests; nil means the real
// ones.
type Gatherer struct {
	Run      func(name string, args ...string) ([]byte, error)
	ReadFile func(name string) ([]byte, error)
}

func (g Gatherer) run(name string, args ...string) ([]byte, error) {
	if g.Run != nil {
		return g.Run(name, args...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var stderr strings.Builder
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

func (g Gatherer) readFile(name string) ([]byte, error) {
	if g.ReadFile != nil {
		return g.ReadFile(name)
	}
	return os.ReadFile(name)
}

// sysctlKeys are the per-interface IPv6 keys the checks read.
var sysctlKeys = []string{"disable_ipv6", "forwarding", "accept_ra", "proxy_ndp"}

// Gather collects the host's facts. Equivalent to: ip -j -d link; ip -j
// addr; ip -j route; ip -j -6 neigh show proxy; nft list ruleset;
// iptables-save -t nat; and reading net.ipv4.ip_forward and
// net.ipv6.conf.*.{disable_ipv6,forwarding,accept_ra,proxy_ndp}.
func (g Gatherer) Gather() (*HostFacts, error) {
	h := &HostFacts{Sysctls: map[string]string{}}
	var links []struct {
		Name     string   `json:"ifname"`
		MTU      int      `json:"mtu"`
		Flags    []string `json:"flags"`
		LinkInfo struct {
			Kind string `json:"info_kind"`
		} `json:"linkinfo"`
		AddrInfo []struct {
			Local     string `json:"local"`
			PrefixLen int    `json:"prefixlen"`
		} `json:"addr_info"`
	}
	if err := g.ipJSON(&links, "-d", "link", "show"); err != nil {
		return nil, err
	}
	for _, l := range links {
		h.Links = append(h.Links, Link{Name: l.Name, Kind: l.LinkInfo.Kind, MTU: l.MTU, Up: contains(l.Flags, "UP")})
	}
	links = nil
	if err := g.ipJSON(&links, "addr", "show"); err != nil {
		return nil, err
	}
	for _, l := range links {
		for _, a := range l.AddrInfo {
			if addr, err := netip.ParseAddr(a.Local); err == nil {
				if p, err := addr.Prefix(a.PrefixLen); err == nil {
					h.Addrs = append(h.Addrs, Addr{Dev: l.Name, Prefix: netip.PrefixFrom(addr, p.Bits())})
				}
			}
		}
	}
	for _, fam := range []string{"-6", "-4"} {
		if err := g.routes(h, fam); err != nil {
			return nil, err
		}
	}
	var neighs []struct{ Dst, Dev string }
	if err := g.ipJSON(&neighs, "-6", "neigh", "show", "proxy"); err != nil {
		return nil, err
	}
	for _, n := range neighs {
		if a, err := netip.ParseAddr(n.Dst); err == nil {
			h.ProxyNeighs = append(h.ProxyNeighs, ProxyNeigh{Addr: a, Dev: n.Dev})
		}
	}
	g.sysctls(h)
	g.firewall(h)
	g.gatherEngine(h)
	return h, nil
}

func (g Gatherer) ipJSON(v any, args ...string) error {
	out, err := g.run("ip", append([]string{"-j"}, args...)...)
	if err != nil {
		return err
	}
	if len(strings.TrimSpace(string(out))) == 0 {
		return nil
	}
	if err := json.Unmarshal(out, v); err != nil {
		return fmt.Errorf("ip -j %s: %w", strings.Join(args, " "), err)
	}
	return nil
}

func (g Gatherer) routes(h *HostFacts, fam string) error {
	var routes []struct {
		Type, Dst, Gateway, Dev, Protocol string
	}
	if err := g.ipJSON(&routes, fam, "route", "show", "table", "main"); err != nil {
		return err
	}
	for _, r := range routes {
		var dst netip.Prefix
		switch {
		case r.Dst == "default" && fam == "-6":
			dst = netip.MustParsePrefix("::/0")
		case r.Dst == "default":
			dst = netip.MustParsePrefix("0.0.0.0/0")
		default:
			if p, err := netip.ParsePrefix(r.Dst); err == nil {
				dst = p
			} else if a, err := netip.ParseAddr(r.Dst); err == nil {
				dst = netip.PrefixFrom(a, a.BitLen())
			} else {
				continue
			}
		}
		gw, _ := netip.ParseAddr(r.Gateway)
		h.Routes = append(h.Routes, Route{Dst: dst, Dev: r.Dev, GW: gw, Protocol: r.Protocol, Type: r.Type})
	}
	return nil
}

func (g Gatherer) sysctls(h *HostFacts) {
	read := func(path string) {
		if b, err := g.readFile("/proc/sys/" + path); err == nil {
			h.Sysctls[path] = strings.TrimSpace(string(b))
		}
	}
	read("net/ipv4/ip_forward")
	if _, err := g.readFile("/proc/sys/net/ipv6/conf/all/disable_ipv6"); errors.Is(err, fs.ErrNotExist) {
		h.Sysctls["net/ipv6/conf/all/disable_ipv6"] = "1" // booted with ipv6.disable=1
		return
	}
	devs := []string{"all", "default"}
	for _, l := range h.Links {
		devs = append(devs, l.Name)
	}
	for _, d := range devs {
		for _, k := range sysctlKeys {
			read("net/ipv6/conf/" + d + "/" + k)
		}
	}
}

func (g Gatherer) firewall(h *HostFacts) {
	var errs []string
	ok := false
	if out, err := g.run("nft", "list", "ruleset"); err == nil {
		h.Ruleset, ok = string(out), true
	} else {
		errs = append(errs, err.Error())
	}
	if out, err := g.run("iptables-save", "-t", "nat"); err == nil {
		h.IPTables, ok = string(out), true
	} else {
		errs = append(errs, err.Error())
	}
	if out, err := g.run("ip6tables-save", "-t", "nat"); err == nil {
		h.IP6Tables, ok = string(out), true
	} else {
		errs = append(errs, err.Error())
	}
	if !ok {
		h.FirewallErr = strings.Join(errs, "; ")
	}
}
