package doctor

import (
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// engineHere says whether dockerd runs in this network namespace.
func engineHere() bool {
	pid, err := os.ReadFile("/var/run/docker.pid")
	if err != nil {
		return false
	}
	theirs, err := os.Readlink("/proc/" + strings.TrimSpace(string(pid)) + "/ns/net")
	ours, err2 := os.Readlink("/proc/thread-self/ns/net")
	return err == nil && err2 == nil && theirs == ours
}

// EngineFacts is what the running Docker Engine says of itself and its
// networks (docker info, docker network inspect), gathered where a
// docker CLI reaches an engine.
type EngineFacts struct {
	Version  string          `json:"version"`
	Networks []EngineNetwork `json:"networks"`
	// Plugins are the socket plugins in /run/docker/plugins that answer,
	// by name (a socket left by a plugin that was killed does not).
	Plugins []string `json:"plugins"`
}

// EngineNetwork is one Docker network.
type EngineNetwork struct {
	Name       string         `json:"name"`
	Driver     string         `json:"driver"`
	IPAMDriver string         `json:"ipamDriver"`
	EnableIPv6 bool           `json:"enableIPv6"`
	EnableIPv4 *bool          `json:"enableIPv4,omitempty"` // Docker 27+
	Internal   bool           `json:"internal,omitempty"`
	Subnets    []netip.Prefix `json:"subnets"`
}

// builtinDrivers need no plugin; any other driver is a plugin that must
// be there when a container joins.
var builtinDrivers = map[string]bool{"bridge": true, "host": true, "null": true, "overlay": true, "macvlan": true, "ipvlan": true, "default": true, "": true}

// gatherEngine asks the engine; no docker CLI or no engine is no facts,
// and so is an engine of another network namespace (its networks are not
// this namespace's: the doctor run inside a lab node or a test's).
func (g Gatherer) gatherEngine(h *HostFacts) {
	if g.Run == nil && !engineHere() {
		return
	}
	v, err := g.run("docker", "info", "--format", "{{.ServerVersion}}")
	if err != nil {
		return
	}
	e := &EngineFacts{Version: strings.TrimSpace(string(v))}
	ids, err := g.run("docker", "network", "ls", "-q")
	if err == nil && len(strings.Fields(string(ids))) > 0 {
		raw, err := g.run("docker", append([]string{"network", "inspect"}, strings.Fields(string(ids))...)...)
		var nets []struct {
			Name       string
			Driver     string
			EnableIPv6 bool
			EnableIPv4 *bool
			Internal   bool
			IPAM       struct {
				Driver string
				Config []struct{ Subnet string }
			}
		}
		if err == nil && json.Unmarshal(raw, &nets) == nil {
			for _, n := range nets {
				en := EngineNetwork{Name: n.Name, Driver: n.Driver, IPAMDriver: n.IPAM.Driver, EnableIPv6: n.EnableIPv6, EnableIPv4: n.EnableIPv4, Internal: n.Internal}
				for _, c := range n.IPAM.Config {
					if p, err := netip.ParsePrefix(c.Subnet); err == nil {
						en.Subnets = append(en.Subnets, p)
					}
				}
				e.Networks = append(e.Networks, en)
			}
		}
	}
	socks, _ := filepath.Glob("/run/docker/plugins/*.sock")
	for _, s := range socks {
		if c, err := net.DialTimeout("unix", s, time.Second); err == nil {
			c.Close()
			e.Plugins = append(e.Plugins, strings.TrimSuffix(filepath.Base(s), ".sock"))
		}
	}
	h.Engine = e
}

// checkEngine reports Docker networks that leave a family out, or whose
// plugin is gone.
func checkEngine(r *reporter, h *HostFacts) {
	e := h.Engine
	if e == nil {
		return
	}
	for _, n := range e.Networks {
		if n.Name == "host" || n.Name == "none" || n.Driver == "host" || n.Driver == "null" {
			continue
		}
		obj := "docker network " + n.Name
		has6 := false
		for _, p := range n.Subnets {
			has6 = has6 || p.Addr().Is6()
		}
		switch {
		case !n.EnableIPv6:
			what := fmt.Sprintf("network %s (driver %s) has no IPv6", n.Name, n.Driver)
			fix := "docker network create --ipv6 NAME (with --subnet for a prefix of your own), or -d duet --ipam-driver duet --ipv6 for duet's zero-config ULA; then move the containers over (docker network connect)"
			if n.Name == "bridge" {
				fix = "set \"ipv6\": true and \"fixed-cidr-v6\" in daemon.json, or run containers on a user-defined network created with --ipv6"
			}
			r.add("DOCKERH001", 0, obj, what, "its containers get IPv4 only: they reach IPv6-only destinations not at all, and IPv6 clients only through a proxy that hides their address", fix)
		case !has6:
			r.add("DOCKERH002", 0, obj, fmt.Sprintf("network %s has IPv6 on but no IPv6 subnet", n.Name),
				"before Docker 27 its containers then get only link-local IPv6 addresses, so nothing routes to them", "recreate it with --subnet and an IPv6 prefix (a random ULA /64, or a /64 routed to this host)")
		}
		for _, d := range []string{n.Driver, n.IPAMDriver} {
			if !builtinDrivers[d] && !contains(e.Plugins, strings.SplitN(d, ":", 2)[0]) {
				r.add("DOCKERH003", 0, obj, fmt.Sprintf("network %s uses driver %q, and no plugin answers on /run/docker/plugins/%s.sock", n.Name, d, d),
					"Docker cannot start or stop a container on it: each join and leave asks the plugin", fmt.Sprintf("start the plugin (duet's: duetd --docker --docker-name %s), or remove the network", d))
				break
			}
		}
	}
}
