package main

import (
	"fmt"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/spf13/cobra"

	"github.com/duetnet/duet/internal/lab"
)

// labTarget points a node command at one node of the lab running on this
// machine (--lab NODE) instead of at this host: the lab's nodes are
// network namespaces, each with its own duetd socket, sysctls and record
// of changes.
type labTarget struct {
	node    string
	datadir string
}

func (l *labTarget) add(cmd *cobra.Command, persistent bool) {
	fs := cmd.Flags()
	if persistent {
		fs = cmd.PersistentFlags()
	}
	fs.StringVar(&l.node, "lab", "", "act on this node of the lab running on this machine (duetctl lab status lists them)")
	fs.StringVar(&l.datadir, "lab-datadir", lab.DefaultDatadir, "the lab's datadir, with --lab")
	_ = cmd.RegisterFlagCompletionFunc("lab", l.complete)
}

// complete offers the running lab's node names.
func (l *labTarget) complete(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
	s, ok, _ := lab.Load(l.datadir)
	if !ok {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	var names []string
	for _, n := range s.Nodes {
		names = append(names, n.Name)
	}
	return names, cobra.ShellCompDirectiveNoFileComp
}

// load returns the running lab and the chosen node.
func (l *labTarget) load() (lab.State, lab.Node, error) {
	s, ok, err := lab.Load(l.datadir)
	if err != nil {
		return s, lab.Node{}, err
	}
	if !ok {
		return s, lab.Node{}, fmt.Errorf("--lab %s: no lab is up at %s: run `duetctl lab up` (or pass --lab-datadir)", l.node, l.datadir)
	}
	n, err := s.Node(l.node)
	return s, n, err
}

// do runs fn inside the chosen node's network namespace.
func (l *labTarget) do(n lab.Node, fn func() error) error {
	return ns.WithNetNSPath("/var/run/netns/"+n.NetNS, func(ns.NetNS) error { return fn() })
}

// hint is what to add to "not found here" errors when a lab is up: the
// user may have meant one of its nodes.
func labHint() string {
	s, ok, _ := lab.Load(lab.DefaultDatadir)
	if !ok || len(s.Nodes) == 0 {
		return ""
	}
	return fmt.Sprintf("; a lab is up on this machine: add --lab %s to ask its node", s.Nodes[0].Name)
}
