package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/duetnet/duet/internal/config"
	"github.com/duetnet/duet/internal/ipam"
	"github.com/duetnet/duet/internal/lab"
	"github.com/duetnet/duet/internal/store"
	"github.com/duetnet/duet/internal/store/open"
)

func ipamCmd() *cobra.Command {
	var node string
	var sf storeFlags
	cmd := &cobra.Command{Use: "ipam", Short: "Show and repair address allocations"}
	sf.add(cmd)
	host, _ := os.Hostname()
	withStore := sf.update
	var asJSON bool
	show := &cobra.Command{
		Use:   "show",
		Short: "List pools, blocks and allocations",
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withStore(func(tx store.Tx) error { return showIPAM(tx, asJSON) })
		},
	}
	show.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	var dry bool
	gc := &cobra.Command{
		Use:   "gc",
		Short: "Free allocations whose network namespace is gone (for runtimes that never call CNI GC)",
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withStore(func(tx store.Tx) error {
				// A shared store holds every node's allocations; only this
				// node's netns paths can be checked from here.
				keep := func(a ipam.Allocation) bool {
					return (sf.etcd() && a.Node != node) || netnsExists(a.NetNS)
				}
				freed, err := ipam.GC(tx, "", keep)
				for _, a := range freed {
					fmt.Printf("freed %s %s (netns %s is gone)\n", a.Handle, addrs(a), a.NetNS)
				}
				if err == nil && dry {
					return errDryRun
				}
				if len(freed) == 0 {
					fmt.Println("nothing to free")
				}
				return err
			})
		},
	}
	gc.Flags().BoolVar(&dry, "dry-run", false, "only print what would be freed")
	gc.Flags().StringVar(&node, "node-name", host, "with etcd: free only this node's allocations (the others' namespaces are on other hosts)")
	_ = gc.RegisterFlagCompletionFunc("node-name", storeNodes(&sf))
	cmd.AddCommand(show, gc)
	return cmd
}

// storeFlags pick the store duetctl reads: the bolt file, or etcd.
type storeFlags struct {
	path string
	ds   config.Datastore
	lab  labTarget
}

func (f *storeFlags) add(cmd *cobra.Command) {
	cmd.PersistentFlags().StringVar(&f.path, "datastore-path", config.DefaultBoltPath, "bolt datastore file")
	cmd.PersistentFlags().StringSliceVar(&f.ds.Endpoints, "etcd-endpoints", nil, "use etcd at these client URLs instead of the bolt file (comma-separated)")
	cmd.PersistentFlags().StringVar(&f.ds.CAFile, "etcd-ca-file", "", "CA certificate for https etcd endpoints")
	cmd.PersistentFlags().StringVar(&f.ds.CertFile, "etcd-cert-file", "", "client certificate for etcd")
	cmd.PersistentFlags().StringVar(&f.ds.KeyFile, "etcd-key-file", "", "client key for etcd")
	f.lab.add(cmd, true)
	_ = cmd.MarkPersistentFlagFilename("datastore-path", "db")
}

func (f *storeFlags) etcd() bool { return len(f.ds.Endpoints) > 0 }

// open opens the chosen store.
func (f *storeFlags) open() (store.Store, error) {
	if f.lab.node != "" {
		s, n, err := f.lab.load()
		if err != nil {
			return nil, err
		}
		return lab.OpenStore(s, n.Name)
	}
	if !f.etcd() {
		if _, err := os.Stat(f.path); err != nil {
			return nil, fmt.Errorf("no duet datastore at %s (%v): no pod has been added yet, or pass --datastore-path (or --etcd-endpoints)%s", f.path, err, labHint())
		}
		return open.Store(config.Datastore{Type: config.DatastoreBolt, Path: f.path})
	}
	d := f.ds
	d.Type = config.DatastoreEtcd
	return open.Store(d)
}

// update runs fn in one transaction on the chosen store; errDryRun rolls
// it back after fn printed what it would do.
func (f *storeFlags) update(fn func(store.Tx) error) error {
	s, err := f.open()
	if err != nil {
		return err
	}
	defer s.Close()
	err = s.Update(context.Background(), fn)
	if err == errDryRun {
		fmt.Println(err)
		return nil
	}
	return err
}

// errDryRun aborts the transaction after printing.
var errDryRun = fmt.Errorf("dry run: nothing freed")

// netnsExists keeps allocations with no recorded netns: nothing proves
// them gone.
func netnsExists(path string) bool {
	if path == "" {
		return true
	}
	_, err := os.Stat(path)
	return err == nil
}

func addrs(a ipam.Allocation) string {
	var s []string
	for _, ip := range a.IPs {
		s = append(s, ip.Address.Addr().String())
	}
	return strings.Join(s, ",")
}

type ipamView struct {
	Pools       map[string][]ipam.Pool `json:"pools"`
	Blocks      []ipam.Block           `json:"blocks"`
	Allocations []ipam.Allocation      `json:"allocations"`
}

func showIPAM(tx store.Tx, asJSON bool) error {
	var v ipamView
	var err error
	if v.Pools, err = ipam.AllPools(tx); err != nil {
		return err
	}
	if v.Blocks, err = ipam.Blocks(tx); err != nil {
		return err
	}
	if v.Allocations, err = ipam.List(tx, ""); err != nil {
		return err
	}
	if asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "POOL\tNETWORK\tBLOCK SIZE\tNAT OUTGOING\tASSIGN")
	var nets []string
	for n := range v.Pools {
		nets = append(nets, n)
	}
	sort.Strings(nets)
	for _, n := range nets {
		for _, p := range v.Pools[n] {
			fmt.Fprintf(w, "%s\t%s\t/%d\t%v\t%s\n", p.CIDR, n, p.BlockSize, p.NATOutgoing, p.Assign)
		}
	}
	fmt.Fprintln(w, "\nBLOCK\tPOOL\tNODE\tIN USE")
	for _, b := range v.Blocks {
		fmt.Fprintf(w, "%s\t%s\t%s\t%d\n", b.CIDR, b.Pool, b.Node, len(b.Allocs))
	}
	fmt.Fprintln(w, "\nNETWORK\tCONTAINER\tIFNAME\tNODE\tADDRESSES\tNETNS")
	for _, a := range v.Allocations {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", a.Network, short(a.ContainerID), a.IfName, a.Node, addrs(a), a.NetNS)
	}
	return w.Flush()
}

func short(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
