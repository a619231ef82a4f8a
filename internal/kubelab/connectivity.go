package kubelab

import (
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/duetnet/duet/internal/connectivity"
	"github.com/duetnet/duet/internal/image"
	"github.com/duetnet/duet/internal/ipam"
	"github.com/duetnet/duet/internal/lab"
)

// This file is `duetctl connectivity` on the kube lab: test pods (agnhost
// netexec) and Services made through the API on every node, then every
// path of the plain lab (through the pods' real namespaces, found from
// containerd) plus what Kubernetes adds: pod to ClusterIP in each family,
// a pod reaching itself through its Service (hairpin), the outside to a
// NodePort, externalTrafficPolicy Local keeping the client's address, and
// cluster DNS answering A and AAAA (both families for a headless Service).

//go:embed connectivity.yaml
var connectivityYAML string

const probeNS = "duet-connectivity"

type probePod struct {
	Name, Node string
	IPs        []netip.Addr
	NetNS      string // under /run/netns
}

// Connectivity deploys the probes (again, harmlessly, if they exist),
// waits for them, and proves every path in every family of the lab.
func Connectivity(ctx context.Context, s lab.State, out io.Writer) ([]connectivity.Result, error) {
	k := s.Kubernetes
	if k == nil || !s.Ready {
		return nil, fmt.Errorf("no kube lab is up: run `duetctl lab up --kubernetes`")
	}
	c := &cluster{bin: k.BinDir, kubectlK: k.Kubeconfig, p: paths{root: k.Root}}
	o := Options{Family: s.Options.Family}
	if err := c.apply([]byte(probeManifest(s, o))); err != nil {
		return nil, err
	}
	if err := waitFor(ctx, "connectivity probe pods Ready", 120*time.Second, "kubectl -n "+probeNS+" describe pods", func() (bool, string) {
		out, err := c.kubectl("-n", probeNS, "wait", "--for=condition=Ready", "pod", "--all", "--timeout=1s")
		return err == nil, strings.TrimSpace(out)
	}); err != nil {
		return nil, err
	}
	pods, err := c.probePods(s)
	if err != nil {
		return nil, err
	}
	svcs, err := c.services()
	if err != nil {
		return nil, err
	}
	// The plain lab's paths, through the pods' own namespaces.
	ls := s
	ls.Pods = nil
	for _, p := range pods {
		ls.Pods = append(ls.Pods, lab.Pod{Name: p.Name, NetNS: p.NetNS, Node: p.Node, IPs: p.IPs})
	}
	results, err := connectivity.Run(ls)
	if err != nil {
		return nil, err
	}
	results = append(results, kubePaths(s, o, pods, svcs)...)
	return results, nil
}

func probeManifest(s lab.State, o Options) string {
	var pods []string
	for _, n := range s.Nodes {
		for i := 1; i <= 2; i++ {
			// Every pod serves the probe Service but the client, the
			// last node's second pod: through a Service that selects
			// the client itself, it would sometimes reach itself, and
			// hairpin traffic is masqueraded (as it must be).
			hairpin := ", server: \"yes\""
			if n.Name == s.Nodes[0].Name && i == 1 {
				hairpin += ", hairpin: \"yes\""
			}
			if n.Name == s.Nodes[len(s.Nodes)-1].Name && i == 2 {
				hairpin = ""
			}
			pods = append(pods, fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: probe-%s-%d, namespace: %s, labels: {app: probe, node: %s%s}}
spec:
  nodeName: %s
  terminationGracePeriodSeconds: 1
  containers:
  - name: netexec
    image: %s
    imagePullPolicy: Never
    args: [netexec, --http-port=8080, --udp-port=8081]
    readinessProbe: {httpGet: {path: /healthz, port: 8080}, periodSeconds: 1}`, n.Name, i, probeNS, n.Name, hairpin, n.Name, image.AgnhostRef))
		}
	}
	policy := "SingleStack"
	if o.Family == "dual" {
		policy = "RequireDualStack"
	}
	return strings.NewReplacer("IP_FAMILY_POLICY", policy, "PROBE_NS", probeNS, "FIRST_NODE", s.Nodes[0].Name).Replace(connectivityYAML) +
		"\n---\n" + strings.Join(pods, "\n---\n") + "\n"
}

// probePods reads the probes' addresses from the API and their network
// namespaces from each node's containerd.
func (c *cluster) probePods(s lab.State) ([]probePod, error) {
	raw, err := c.kubectl("-n", probeNS, "get", "pods", "-o", "json")
	if err != nil {
		return nil, err
	}
	var list struct {
		Items []struct {
			Metadata struct{ Name string }
			Spec     struct{ NodeName string }
			Status   struct{ PodIPs []struct{ IP string } }
		}
	}
	if err := json.Unmarshal([]byte(raw), &list); err != nil {
		return nil, err
	}
	netns := map[string]string{}
	for _, n := range s.Nodes {
		for pod, path := range podNetns(filepath.Join(c.p.nodeDir(n.Name), "containerd", "containerd.sock")) {
			netns[pod] = path
		}
	}
	var pods []probePod
	for _, it := range list.Items {
		p := probePod{Name: it.Metadata.Name, Node: it.Spec.NodeName, NetNS: filepath.Base(netns[it.Metadata.Name])}
		for _, ip := range it.Status.PodIPs {
			if a, err := netip.ParseAddr(ip.IP); err == nil {
				p.IPs = append(p.IPs, a)
			}
		}
		if netns[p.Name] == "" {
			return nil, fmt.Errorf("pod %s: no network namespace found in %s's containerd", p.Name, p.Node)
		}
		pods = append(pods, p)
	}
	sort.Slice(pods, func(i, j int) bool { return pods[i].Name < pods[j].Name })
	return pods, nil
}

type service struct {
	clusterIPs []netip.Addr
	nodePort   int
}

func (c *cluster) services() (map[string]service, error) {
	raw, err := c.kubectl("-n", probeNS, "get", "services", "-o", "json")
	if err != nil {
		return nil, err
	}
	var list struct {
		Items []struct {
			Metadata struct{ Name string }
			Spec     struct {
				ClusterIPs []string
				Ports      []struct{ NodePort int }
			}
		}
	}
	if err := json.Unmarshal([]byte(raw), &list); err != nil {
		return nil, err
	}
	out := map[string]service{}
	for _, it := range list.Items {
		var sv service
		for _, ip := range it.Spec.ClusterIPs {
			if a, err := netip.ParseAddr(ip); err == nil {
				sv.clusterIPs = append(sv.clusterIPs, a)
			}
		}
		if len(it.Spec.Ports) > 0 {
			sv.nodePort = it.Spec.Ports[0].NodePort
		}
		out[it.Metadata.Name] = sv
	}
	return out, nil
}

func addrOf(as []netip.Addr, fam ipam.Family) (netip.Addr, bool) {
	for _, a := range as {
		if ipam.FamilyOf(a) == fam {
			return a, true
		}
	}
	return netip.Addr{}, false
}

// kubePaths are the Kubernetes paths, per family, over HTTP to netexec's
// /clientip (which answers with the source it saw).
func kubePaths(s lab.State, o Options, pods []probePod, svcs map[string]service) []connectivity.Result {
	var byNode = map[string][]probePod{}
	for _, p := range pods {
		byNode[p.Node] = append(byNode[p.Node], p)
	}
	n1, nLast := s.Nodes[0], s.Nodes[len(s.Nodes)-1]
	client := byNode[nLast.Name][1] // the pod the probe Service does not select
	hairpin := byNode[n1.Name][0]
	type check struct {
		name, from, fromNS, to string
		dst                    func(ipam.Family) (netip.Addr, int, bool)
		// expect is the source the server must see; invalid: any.
		expect func(ipam.Family) netip.Addr
	}
	svcDst := func(name string, port int) func(ipam.Family) (netip.Addr, int, bool) {
		return func(f ipam.Family) (netip.Addr, int, bool) {
			a, ok := addrOf(svcs[name].clusterIPs, f)
			return a, port, ok
		}
	}
	nodePortDst := func(name string, n lab.Node) func(ipam.Family) (netip.Addr, int, bool) {
		return func(f ipam.Family) (netip.Addr, int, bool) {
			a, ok := addrOf(o.nodeIPs(n), f)
			return a, svcs[name].nodePort, ok && svcs[name].nodePort != 0
		}
	}
	src := func(as []netip.Addr) func(ipam.Family) netip.Addr {
		return func(f ipam.Family) netip.Addr { a, _ := addrOf(as, f); return a }
	}
	anySource := func(ipam.Family) netip.Addr { return netip.Addr{} }
	checks := []check{
		{"pod to ClusterIP (endpoints on every node)", client.Name, client.NetNS, "svc/probe", svcDst("probe", 80), src(client.IPs)},
		{"node to ClusterIP", n1.Name, n1.NetNS, "svc/probe", svcDst("probe", 80), anySource},
		{"pod to itself through its Service (hairpin)", hairpin.Name, hairpin.NetNS, "svc/probe-hairpin", svcDst("probe-hairpin", 80), anySource},
		{"outside to NodePort (externalTrafficPolicy Cluster)", "outside", s.Outside.NetNS, nLast.Name + " nodePort", nodePortDst("probe-nodeport", nLast), anySource},
		{"outside to NodePort (externalTrafficPolicy Local)", "outside", s.Outside.NetNS, n1.Name + " nodePort", nodePortDst("probe-local", n1), src(s.Outside.Addrs)},
	}
	var results []connectivity.Result
	for _, fam := range []ipam.Family{ipam.IPv6, ipam.IPv4} {
		for _, ch := range checks {
			dst, port, ok := ch.dst(fam)
			if !ok {
				continue
			}
			for _, proto := range []string{"tcp", "udp"} {
				if proto == "udp" && strings.Contains(ch.name, "NodePort") {
					continue // the NodePort Services are TCP only
				}
				p := port
				if proto == "udp" {
					p = port + 1
				}
				r := connectivity.Result{Path: ch.name, Family: fam.String(), Proto: proto, From: ch.from, To: ch.to, Dst: dst}
				start := time.Now()
				seen, err := clientIP("/run/netns/"+ch.fromNS, proto, netip.AddrPortFrom(dst, uint16(p)))
				r.Latency = time.Since(start)
				r.OK = err == nil
				if err != nil {
					r.Error = err.Error()
				} else {
					r.SeenFrom = seen
					if want := ch.expect(fam); want.IsValid() {
						r.Expect = want.String()
						if seen != r.Expect {
							r.OK = false
							r.Error = fmt.Sprintf("the endpoint saw source %s, want %s", seen, want)
						}
					}
				}
				results = append(results, r)
			}
		}
	}
	results = append(results, dnsChecks(client, o)...)
	return results
}

// clientIP asks netexec, from inside netns, which source it sees.
func clientIP(netns, proto string, dst netip.AddrPort) (string, error) {
	dial := lab.NetnsDial(netns)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
	defer cancel()
	var answer string
	if proto == "tcp" {
		cl := http.Client{Transport: &http.Transport{DialContext: dial, DisableKeepAlives: true}}
		req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+dst.String()+"/clientip", nil)
		resp, err := cl.Do(req)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		answer = string(b)
	} else {
		conn, err := dial(ctx, "udp", dst.String())
		if err != nil {
			return "", err
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(3 * time.Second))
		// netexec's UDP server answers "clientip" with the client's ip:port.
		for try := 0; try < 3; try++ {
			if _, err := conn.Write([]byte("clientip")); err != nil {
				return "", err
			}
			buf := make([]byte, 128)
			_ = conn.SetReadDeadline(time.Now().Add(time.Second))
			n, err := conn.Read(buf)
			if err == nil {
				answer = string(buf[:n])
				break
			}
			if try == 2 {
				return "", fmt.Errorf("no answer from %s: %w", dst, err)
			}
		}
	}
	host, _, err := net.SplitHostPort(strings.TrimSpace(answer))
	if err != nil {
		return "", fmt.Errorf("netexec answered %q", answer)
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return "", fmt.Errorf("netexec answered %q", answer)
	}
	return a.Unmap().String(), nil
}

// dnsChecks resolve the probe Services from a pod through cluster DNS:
// A and AAAA for the ClusterIP Service, both families of pod addresses
// for the headless one (seed 004).
func dnsChecks(from probePod, o Options) []connectivity.Result {
	var results []connectivity.Result
	dial := lab.NetnsDial("/run/netns/" + from.NetNS)
	for _, dnsIP := range o.DNSService() {
		r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return dial(ctx, network, netip.AddrPortFrom(dnsIP, 53).String())
		}}
		for _, name := range []string{"probe", "probe-headless"} {
			fqdn := name + "." + probeNS + ".svc." + ClusterDomain
			for _, fam := range []ipam.Family{ipam.IPv6, ipam.IPv4} {
				if (fam == ipam.IPv6 && o.Family == "ipv4") || (fam == ipam.IPv4 && o.Family == "ipv6") {
					continue
				}
				network, qtype := "ip6", "AAAA"
				if fam == ipam.IPv4 {
					network, qtype = "ip4", "A"
				}
				res := connectivity.Result{Path: "cluster DNS " + qtype + " via " + dnsIP.String(), Family: fam.String(), Proto: "udp", From: from.Name, To: fqdn}
				ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
				start := time.Now()
				ips, err := r.LookupNetIP(ctx, network, fqdn)
				cancel()
				res.Latency = time.Since(start)
				res.OK = err == nil && len(ips) > 0
				if err != nil {
					res.Error = err.Error()
				} else {
					res.SeenFrom = strconv.Itoa(len(ips)) + " answers"
				}
				results = append(results, res)
			}
		}
	}
	return results
}

// podNetns maps each probe pod to its network namespace path.
func podNetns(sock string) map[string]string {
	out := map[string]string{}
	for _, sb := range sandboxes(sock) {
		if sb.namespace == probeNS {
			out[sb.pod] = sb.netns
		}
	}
	return out
}
