package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/duetnet/duet/internal/connectivity"
	"github.com/duetnet/duet/internal/kubelab"
	"github.com/duetnet/duet/internal/lab"
)

func labCmd() *cobra.Command {
	var datadir string
	cmd := &cobra.Command{Use: "lab", Short: "A whole duet cluster in network namespaces on this machine"}
	cmd.PersistentFlags().StringVar(&datadir, "datadir", lab.DefaultDatadir, "where the lab keeps its state, datastore and logs")
	_ = cmd.MarkPersistentFlagDirname("datadir")
	o := lab.Options{}
	var kube bool
	var proxyMode, kubeBin, kubeSrc string
	var netpol bool
	up := &cobra.Command{
		Use:   "up",
		Short: "Build the lab: a switch, nodes running duetd, an outside namespace, and pods made by the duet plugin (--kubernetes: a real cluster with duet as its CNI)",
		RunE: func(*cobra.Command, []string) error {
			self, err := os.Executable()
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			if kube {
				if kubeSrc == "" {
					kubeSrc = filepath.Join(filepath.Dir(self), "..", "hack", "kube")
				}
				if o.Topology != "switched" {
					return fmt.Errorf("--topology %s: the kube lab's nodes share one segment; drop --topology with --kubernetes", o.Topology)
				}
				if o.Runtime != "cni" {
					return fmt.Errorf("--runtime %s: the kube lab's runtime is the kubelet with containerd; drop --runtime with --kubernetes", o.Runtime)
				}
				o = o.WithDefaults()
				ko := kubelab.Options{Nodes: o.Nodes, Family: o.Family, Routing: o.Routing, ProxyMode: proxyMode, NoNetworkPolicy: !netpol}
				_, err = kubelab.Up(ctx, ko, kubelab.Sources{DuetBin: filepath.Dir(self), KubeSrc: kubeSrc, KubeBin: kubeBin}, datadir, os.Stdout)
			} else {
				_, err = lab.Up(ctx, o, filepath.Dir(self), datadir, os.Stdout)
			}
			if err != nil {
				return fmt.Errorf("%w\n(what was made is recorded; `duetctl lab down` removes it)", err)
			}
			return nil
		},
	}
	up.Flags().IntVar(&o.Nodes, "nodes", 2, "number of nodes")
	up.Flags().IntVar(&o.PodsPerNode, "pods-per-node", 2, "pods on each node")
	up.Flags().StringVar(&o.Family, "family", "dual", "pod address families: dual, ipv6 or ipv4")
	up.Flags().StringVar(&o.Routing, "routing", "", "how nodes reach each other's pods: direct (routes on the shared segment), vxlan (an overlay), or bgp (GoBGP: a node-to-node mesh when switched, peering with a BIRD router when routed) (default direct; bgp with --topology routed)")
	up.Flags().StringVar(&o.Topology, "topology", "switched", "switched (nodes on one segment), routed (each node on its own subnet behind a BIRD router; implies --routing bgp), or ndp-proxy (pods in the nodes' uplink /64, answered by NDP proxy)")
	up.Flags().StringVar(&o.Runtime, "runtime", "cni", "what makes the pods: cni (namespaces and the duet plugin) or docker (containers of this machine's Docker Engine on each node's duet network, served by duetd --docker)")
	up.Flags().BoolVar(&kube, "kubernetes", false, "a real Kubernetes cluster (upstream binaries built from Go modules and cached) with duet installed from deploy/duet.yaml")
	up.Flags().StringVar(&proxyMode, "proxy-mode", "nftables", "kube-proxy's mode with --kubernetes: nftables or iptables")
	up.Flags().BoolVar(&netpol, "network-policy", true, "with --kubernetes: duet enforces NetworkPolicy (--network-policy=false leaves every pod open)")
	up.Flags().StringVar(&kubeBin, "kube-bin", "", "prebuilt upstream binaries (kube-apiserver, kubelet, ..., agnhost, coredns) instead of building them")
	up.Flags().StringVar(&kubeSrc, "kube-src", "", "the upstream build module (default: hack/kube beside duetctl's bin/)")
	choices(up, "family", "dual\tIPv6 and IPv4, IPv6 first", "ipv6\tIPv6 only", "ipv4\tIPv4 only")
	choices(up, "routing", "direct\troutes on the shared segment", "vxlan\tan overlay", "bgp\tGoBGP: a node mesh, or peering with a BIRD router when routed")
	choices(up, "topology", "switched\tnodes on one segment", "routed\teach node behind a BIRD router (implies --routing bgp)", "ndp-proxy\tpods in the nodes' uplink /64")
	choices(up, "proxy-mode", "nftables", "iptables")
	choices(up, "runtime", "cni\tnamespaces and the duet plugin", "docker\tDocker Engine containers on duet networks")
	_ = up.MarkFlagDirname("kube-bin")
	_ = up.MarkFlagDirname("kube-src")
	var asJSON bool
	status := &cobra.Command{
		Use:   "status",
		Short: "Show the lab's nodes, pods and outside",
		RunE: func(*cobra.Command, []string) error {
			s, ok, err := lab.Load(datadir)
			if err != nil {
				return err
			}
			if !ok {
				return fmt.Errorf("no lab is up: run `duetctl lab up`")
			}
			if asJSON {
				enc := json.NewEncoder(os.Stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(s)
			}
			w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintf(w, "underlay\t%s\t%s\n", s.Underlay.Kind, s.Underlay.NetNS)
			fmt.Fprintf(w, "outside\t%s\t%v\n", s.Outside.NetNS, s.Outside.Addrs)
			if s.Neighbour != nil {
				fmt.Fprintf(w, "neighbour\t%s\t%v\n", s.Neighbour.NetNS, s.Neighbour.Addrs)
			}
			if k := s.Kubernetes; k != nil {
				fmt.Fprintf(w, "kubernetes\t%s\tkube-proxy %s\tkubectl --kubeconfig %s (%s)\n", k.Version, k.ProxyMode, k.Kubeconfig, k.Kubectl)
				fmt.Fprintf(w, "control plane\t%s\t%v\n", k.ControlPlane.NetNS, k.ControlPlane.Addrs)
			}
			if s.Kubernetes == nil && s.Store.NetNS != "" {
				fmt.Fprintf(w, "etcd\t%s\t%s\n", s.Store.NetNS, strings.Join(s.EtcdEndpoints(), " "))
			}
			for _, n := range s.Nodes {
				fmt.Fprintf(w, "node %s\t%s\t%v\tsocket %s\n", n.Name, n.NetNS, n.Addrs, s.NodeSocket(n.Name))
			}
			for _, p := range s.Pods {
				fmt.Fprintf(w, "pod %s\t%s\t%v (on %s)\n", p.Name, p.NetNS, p.IPs, p.Node)
			}
			if err := w.Flush(); err != nil {
				return err
			}
			if len(s.Nodes) > 0 {
				n := s.Nodes[0].Name
				fmt.Printf("\nInspect a node with duet's own commands:\n  duetctl node status --lab %s\n  duetctl node sysctls --lab %s\n  duetctl ipam show --lab %s\n  ip netns exec %s%s nft list table inet duet\n", n, n, n, lab.Prefix, n)
			}
			return nil
		},
	}
	status.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	down := &cobra.Command{
		Use:   "down",
		Short: "Remove every namespace, process and file the lab made",
		RunE: func(*cobra.Command, []string) error {
			if s, ok, err := lab.Load(datadir); err == nil && ok && s.Kubernetes != nil {
				if err := kubelab.Down(s, os.Stdout); err != nil {
					fmt.Fprintln(os.Stderr, "warning:", err)
				}
			}
			return lab.Down(datadir, os.Stdout)
		},
	}
	var eo kubelab.E2EOptions
	e2e := &cobra.Command{
		Use:   "e2e",
		Short: "Run upstream e2e.test (the kube lab's pinned version) against the kube lab; prints passed/failed/skipped",
		RunE: func(*cobra.Command, []string) error {
			s, ok, err := lab.Load(datadir)
			if err != nil {
				return err
			}
			if !ok {
				return fmt.Errorf("no lab is up: run `duetctl lab up --kubernetes`")
			}
			_, err = kubelab.E2E(s, eo, os.Stdout)
			return err
		},
	}
	e2e.Flags().StringVar(&eo.Focus, "focus", `\[Feature:IPv6DualStack\]`, "ginkgo focus (a regular expression over spec names)")
	e2e.Flags().StringVar(&eo.Skip, "skip", kubelab.DefaultSkip, "ginkgo skip")
	e2e.Flags().IntVar(&eo.Procs, "procs", 1, "parallel spec processes (through the ginkgo CLI)")
	e2e.Flags().DurationVar(&eo.Timeout, "timeout", 0, "the whole suite's time limit (default 40m)")
	e2e.Flags().StringVar(&eo.Out, "out", "", "directory for the log and JUnit report (default: under the lab's datadir)")
	cmd.AddCommand(up, status, down, e2e)
	return cmd
}

func connectivityCmd() *cobra.Command {
	var datadir string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "connectivity",
		Short: "Prove every path of the lab in both families: ICMP, TCP and UDP, and the NAT expectations",
		RunE: func(*cobra.Command, []string) error {
			s, ok, err := lab.Load(datadir)
			if err != nil {
				return err
			}
			if !ok || !s.Ready {
				return fmt.Errorf("no lab is up: run `duetctl lab up`")
			}
			var results []connectivity.Result
			if s.Kubernetes != nil {
				if results, err = kubelab.Connectivity(context.Background(), s, os.Stdout); err != nil {
					return err
				}
			} else {
				if results, err = connectivity.Run(s); err != nil {
					return err
				}
			}
			failed := 0
			for _, r := range results {
				if !r.OK {
					failed++
				}
			}
			if asJSON {
				enc := json.NewEncoder(os.Stdout)
				enc.SetIndent("", "  ")
				if err := enc.Encode(results); err != nil {
					return err
				}
			} else {
				printTable(results)
			}
			if failed > 0 {
				return fmt.Errorf("%d of %d checks failed", failed, len(results))
			}
			if !asJSON {
				fmt.Printf("\nall %d checks passed\n", len(results))
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&datadir, "datadir", lab.DefaultDatadir, "the lab's data directory")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// printTable prints one row per path and family, one column per protocol.
func printTable(results []connectivity.Result) {
	type key struct{ path, fam, from, to string }
	var order []key
	cells := map[key]map[string]connectivity.Result{}
	for _, r := range results {
		k := key{r.Path, r.Family, r.From, r.To}
		if cells[k] == nil {
			cells[k] = map[string]connectivity.Result{}
			order = append(order, k)
		}
		cells[k][r.Proto] = r
	}
	sort.SliceStable(order, func(i, j int) bool { return order[i].fam > order[j].fam }) // IPv6 first
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "FAMILY\tPATH\tFROM -> TO\tICMP\tTCP\tUDP\tSOURCE SEEN")
	var errs []string
	for _, k := range order {
		row := []string{k.fam, k.path, k.from + " -> " + k.to}
		seen := ""
		for _, p := range []string{"icmp", "tcp", "udp"} {
			r, ok := cells[k][p]
			switch {
			case !ok:
				row = append(row, "-")
			case r.OK:
				row = append(row, fmt.Sprintf("ok %.2fms", float64(r.Latency.Microseconds())/1000))
			default:
				row = append(row, "FAIL")
				errs = append(errs, fmt.Sprintf("%s %s %s %s: %s", k.fam, k.path, k.from+" -> "+k.to, p, r.Error))
			}
			if r.SeenFrom != "" {
				seen = r.SeenFrom
				if r.Expect != "" && r.SeenFrom != r.Expect {
					seen += " (want " + r.Expect + ")"
				}
			}
		}
		fmt.Fprintln(w, strings.Join(append(row, seen), "\t"))
	}
	w.Flush()
	for _, e := range errs {
		fmt.Println("  " + e)
	}
}
