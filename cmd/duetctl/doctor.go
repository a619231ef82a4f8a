package main

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/duetnet/duet/internal/doctor"
)

// Exit statuses of duetctl doctor.
const (
	doctorOK       = 0 // nothing is an error (warnings and hints may remain)
	doctorProblems = 1 // at least one finding is an error
	doctorUsage    = 2 // bad usage, or input that cannot be read
)

func doctorCmd() *cobra.Command {
	var host, list bool
	var format string
	cmd := &cobra.Command{
		Use:   "doctor [PATH...]",
		Short: "Check every IPv6 layer and say how to fix what is wrong",
		Long: `Check every IPv6 layer of a container setup and say, for each problem, what
is wrong, why it matters and how to fix it.

Each PATH is a file or a directory (read recursively); the kind of each file
is recognised from its content: Docker daemon.json, Compose files, Kubernetes
manifests (multi-document YAML), kubeadm ClusterConfiguration and
KubeProxyConfiguration, CNI conflists, Calico IPPools, Flannel net-conf.json,
and dockerd or kubeadm init command lines in scripts. With no PATH, or with
--host, it checks the live host (this network namespace; for another one:
ip netns exec NS duetctl doctor --host).

Exit status: 0 when nothing is an error, 1 when something is, 2 for bad
usage or unreadable input.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if list {
				listChecks(cmd.OutOrStdout())
				return nil
			}
			if code := runDoctor(cmd.OutOrStdout(), cmd.ErrOrStderr(), args, host || len(args) == 0, format, isTerminal(os.Stdout)); code != doctorOK {
				os.Exit(code)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&host, "host", false, "check the live host too (the default with no PATH)")
	cmd.Flags().StringVar(&format, "format", "table", "output format: table or json (a list of findings)")
	choices(cmd, "format", "table", "json")
	cmd.Flags().BoolVar(&list, "list", false, "list every check (code, layer, severity) and exit")
	cmd.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		fmt.Fprintf(c.ErrOrStderr(), "duetctl doctor: %v\n%s", err, c.UsageString())
		os.Exit(doctorUsage)
		return err
	})
	return cmd
}

// runDoctor checks the paths (and the host) and prints the findings; it
// returns the exit status.
func runDoctor(stdout, stderr io.Writer, paths []string, host bool, format string, color bool) int {
	if format != "table" && format != "json" {
		fmt.Fprintf(stderr, "duetctl doctor: --format %q: use table or json\n", format)
		return doctorUsage
	}
	var findings []doctor.Finding
	if host {
		facts, err := doctor.Gatherer{}.Gather()
		if err != nil {
			fmt.Fprintf(stderr, "duetctl doctor: reading the host: %v\n", err)
			return doctorUsage
		}
		findings = append(findings, doctor.CheckHost(facts)...)
	}
	if len(paths) > 0 {
		fs, err := doctor.CheckPaths(paths)
		if err != nil {
			fmt.Fprintf(stderr, "duetctl doctor: %v\n", err)
			return doctorUsage
		}
		findings = append(findings, fs...)
	}
	doctor.Sort(findings)
	var err error
	if format == "json" {
		err = doctor.RenderJSON(stdout, findings)
	} else {
		width, _ := strconv.Atoi(os.Getenv("COLUMNS"))
		err = doctor.RenderTable(stdout, findings, color && os.Getenv("NO_COLOR") == "", width)
	}
	if err != nil {
		fmt.Fprintf(stderr, "duetctl doctor: %v\n", err)
		return doctorUsage
	}
	if doctor.HasErrors(findings) {
		return doctorProblems
	}
	return doctorOK
}

func listChecks(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CODE\tLAYER\tSEVERITY\tCHECK")
	for _, c := range doctor.Checks {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", c.Code, c.Layer, c.Severity, c.Summary)
	}
	tw.Flush()
}

// isTerminal says whether f is a terminal (a character device), so colour
// is only used where a person reads it.
func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
