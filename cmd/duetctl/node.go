package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/duetnet/duet/internal/agent"
	"github.com/duetnet/duet/internal/cluster"
	"github.com/duetnet/duet/internal/cni"
	"github.com/duetnet/duet/internal/ipam"
	"github.com/duetnet/duet/internal/store"
)

func nodeCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "node", Short: "Inspect this node"}
	var asJSON bool
	var sysLab labTarget
	sys := &cobra.Command{
		Use:   "sysctls",
		Short: "Show the host sysctls duet relies on, what they should be, and what duet changed",
		RunE: func(*cobra.Command, []string) error {
			if sysLab.node == "" {
				return showSysctls(cni.SysctlLogPath, asJSON)
			}
			s, n, err := sysLab.load()
			if err != nil {
				return err
			}
			return sysLab.do(n, func() error { return showSysctls(s.NodeSysctlLog(n.Name), asJSON) })
		},
	}
	sys.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	sysLab.add(sys, false)
	var sock string
	var statusJSON bool
	var statusLab labTarget
	status := &cobra.Command{
		Use:   "status",
		Short: "Ask this node's duetd for its routes, cluster view and BGP peers",
		RunE: func(*cobra.Command, []string) error {
			if statusLab.node != "" {
				s, n, err := statusLab.load()
				if err != nil {
					return err
				}
				sock = s.NodeSocket(n.Name)
			}
			return nodeStatus(sock, statusJSON)
		},
	}
	status.Flags().StringVar(&sock, "socket", "/run/duet/duetd.sock", "duetd's status socket")
	status.Flags().BoolVar(&statusJSON, "json", false, "print JSON")
	statusLab.add(status, false)
	var sf storeFlags
	var force bool
	remove := &cobra.Command{
		Use:   "remove NAME",
		Short: "Forget a node that is gone for good: free its addresses and blocks, delete its record",
		Long: `remove frees everything a node that is gone for good holds in the store: its
pods' allocations, its blocks (so other nodes can claim them) and its node
record (so other nodes drop their routes to it). A node whose duetd is still
heartbeating is refused unless --force. It works in bounded steps and can be
run again if interrupted.`,
		Args: cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error { return removeNode(&sf, args[0], force) },
	}
	sf.add(remove)
	remove.ValidArgsFunction = func(c *cobra.Command, args []string, s string) ([]string, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		return storeNodes(&sf)(c, args, s)
	}
	remove.Flags().BoolVar(&force, "force", false, "remove the node even though its duetd is alive")
	cmd.AddCommand(sys, status, remove)
	return cmd
}

// removeNode checks the node is gone, then releases its allocations and
// blocks in transactions of at most 100 keys (etcd bounds a transaction's
// size), then deletes its record.
func removeNode(sf *storeFlags, name string, force bool) error {
	s, err := sf.open()
	if err != nil {
		return err
	}
	defer s.Close()
	ctx := context.Background()
	known := false
	err = s.Update(ctx, func(tx store.Tx) error {
		_, ok, err := cluster.Get(tx, name)
		known = ok
		if err != nil || !ok {
			return err
		}
		// Refused here, before anything is freed, if the node is alive.
		return cluster.Remove(nopWrites{tx}, name, time.Now(), force)
	})
	if err != nil {
		return err
	}
	total := 0
	for {
		var n int
		if err := s.Update(ctx, func(tx store.Tx) (err error) {
			n, err = ipam.ReleaseNode(tx, name, 100)
			return err
		}); err != nil {
			return fmt.Errorf("releasing node %s's addresses and blocks (%d keys freed so far; run it again): %w", name, total, err)
		}
		if n == 0 {
			break
		}
		total += n
	}
	if err := s.Update(ctx, func(tx store.Tx) error { return cluster.Remove(tx, name, time.Now(), true) }); err != nil {
		return err
	}
	if !known && total == 0 {
		return fmt.Errorf("no node %q in the store, and nothing held under its name: check the name (duetctl ipam show lists blocks by node)", name)
	}
	fmt.Printf("removed node %s: %d allocation and block keys freed\n", name, total)
	return nil
}

// nopWrites is a transaction whose writes are dropped, to ask Remove
// whether it would refuse without removing yet.
type nopWrites struct{ store.Tx }

func (nopWrites) Put(string, []byte) error { return nil }
func (nopWrites) Delete(string) error      { return nil }

func nodeStatus(sock string, asJSON bool) error {
	c := http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
	resp, err := c.Get("http://duetd/status")
	if err != nil {
		return fmt.Errorf("duetd is not answering on %s (%v): is it running? (--socket)%s", sock, err, labHint())
	}
	defer resp.Body.Close()
	var st agent.Status
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return err
	}
	if asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(st)
	}
	fmt.Printf("node %s %v routing %s, last sync %s ago", st.Node.Name, st.Node.Addrs, st.Node.Routing, time.Since(st.LastSync).Round(time.Millisecond))
	if st.LastError != "" {
		fmt.Printf(", error: %s", st.LastError)
	}
	fmt.Printf("\n\nnodes:\n")
	for _, n := range st.Nodes {
		fmt.Printf("  %s %v\n", n.Name, n.Addrs)
	}
	fmt.Printf("\nroutes (proto 201):\n")
	for _, r := range st.Routes {
		fmt.Printf("  %s\n", r)
	}
	for _, p := range st.Problems {
		fmt.Printf("problem: %s: %s\n", p.Node, p.Msg)
	}
	if len(st.Peers) > 0 {
		w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(w, "\nBGP PEER\tASN\tSTATE\tUPTIME\tEND-OF-RIB\tRECEIVED\tACCEPTED\tADVERTISED\tLAST ERROR")
		for _, p := range st.Peers {
			eor := "waiting"
			if p.EndOfRIB {
				eor = "received"
			}
			fmt.Fprintf(w, "%s\t%d\t%s\t%s\t%s\t%d\t%d\t%d\t%s\n", p.Addr, p.ASN, p.State, p.Uptime.Round(time.Second), eor, p.Received, p.Accepted, p.Advertised, p.LastError)
		}
		w.Flush()
	}
	return nil
}

// sysctlRow is one sysctl with the value duet wants and why.
type sysctlRow struct {
	Name  string `json:"name"`
	Value string `json:"value"`
	Want  string `json:"want"`
	Why   string `json:"why"`
	OK    bool   `json:"ok"`
}

type sysctlReport struct {
	Sysctls []sysctlRow          `json:"sysctls"`
	Changes []cni.SysctlLogEntry `json:"changes"`
}

func readProc(name string) string {
	b, err := os.ReadFile(filepath.Join("/proc/sys", strings.ReplaceAll(name, ".", "/")))
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(b))
}

func sysctlRows() []sysctlRow {
	rows := []sysctlRow{
		{Name: "net.ipv4.ip_forward", Want: "1", Why: "pods reach each other and the outside through the host"},
		{Name: "net.ipv6.conf.all.forwarding", Want: "1", Why: "the same, for IPv6"},
		{Name: "net.ipv4.conf.all.route_localnet", Want: "0", Why: "never set: it exposes 127.0.0.0/8 services to pods"},
	}
	ents, _ := os.ReadDir("/proc/sys/net/ipv6/conf")
	var ifs []string
	for _, e := range ents {
		n := e.Name()
		if n == "all" || n == "default" || n == "lo" || strings.HasPrefix(n, "dt") {
			continue
		}
		ifs = append(ifs, n)
	}
	sort.Strings(ifs)
	fwd := readProc("net.ipv6.conf.all.forwarding") == "1"
	for _, n := range ifs {
		name := "net.ipv6.conf." + n + ".accept_ra"
		v := readProc(name)
		row := sysctlRow{Name: name, Value: v, Want: "0 or 2", Why: "with forwarding on, 1 ignores router advertisements and the RA-learned default route expires"}
		if !fwd {
			row.Want, row.Why = "any", "forwarding is off, so 1 still accepts router advertisements"
		}
		rows = append(rows, row)
	}
	for i := range rows {
		if rows[i].Value == "" {
			rows[i].Value = readProc(rows[i].Name)
		}
		switch rows[i].Want {
		case "any":
			rows[i].OK = true
		case "0 or 2":
			rows[i].OK = rows[i].Value == "0" || rows[i].Value == "2"
		default:
			rows[i].OK = rows[i].Value == rows[i].Want
		}
	}
	return rows
}

// showSysctls reports this namespace's sysctls and the changes recorded in
// logPath.
func showSysctls(logPath string, asJSON bool) error {
	r := sysctlReport{Sysctls: sysctlRows()}
	if f, err := os.Open(logPath); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			var e cni.SysctlLogEntry
			// Only this namespace's: a lab's nodes share the file.
			if json.Unmarshal(sc.Bytes(), &e) == nil && (e.NetNS == "" || e.NetNS == cni.CurrentNetNS()) {
				r.Changes = append(r.Changes, e)
			}
		}
		f.Close()
	}
	if asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "SYSCTL\tVALUE\tWANT\tOK\tWHY")
	for _, row := range r.Sysctls {
		mark := "ok"
		if !row.OK {
			mark = "FIX"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", row.Name, row.Value, row.Want, mark, row.Why)
	}
	w.Flush()
	fmt.Printf("\nChanges made by duet (%s):\n", logPath)
	if len(r.Changes) == 0 {
		fmt.Println("  none")
	}
	for _, c := range r.Changes {
		fmt.Printf("  %s  %s: %s -> %s  (%s)\n", c.Time, c.Name, c.Old, c.New, c.By)
	}
	return nil
}
