package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

func policyCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "policy", Short: "Inspect NetworkPolicy as this node's duetd compiled it"}
	var sock string
	var asJSON bool
	show := &cobra.Command{
		Use:   "show NAMESPACE/NAME",
		Short: "Show what a pod may receive and send, family by family, and which policy and rule allows it",
		Long: `show asks this node's duetd (run with --kubernetes --network-policy) what its
last compile made of a pod: for ingress and egress, whether a policy isolates
the pod, every rule that lets traffic in or out (policy, rule index, peers,
ports), and what is allowed in IPv6 and in IPv4 apart. Any pod of the cluster
can be asked; the answer says whether this node enforces it (the pod runs here)
or the pod's own node does. A NAME without a namespace is in "default".`,
		Args: cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error { return policyShow(os.Stdout, sock, args[0], asJSON) },
	}
	show.Flags().StringVar(&sock, "socket", "/run/duet/duetd.sock", "duetd's status socket")
	show.Flags().BoolVar(&asJSON, "json", false, "print JSON (the pod's compiled rules too)")
	cmd.AddCommand(show)
	return cmd
}

func policyShow(w io.Writer, sock, pod string, asJSON bool) error {
	if !strings.Contains(pod, "/") {
		pod = "default/" + pod
	}
	q := url.Values{"pod": {pod}}
	if asJSON {
		q.Set("format", "json")
	}
	c := http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
	resp, err := c.Get("http://duetd/policy?" + q.Encode())
	if err != nil {
		return fmt.Errorf("duetd is not answering on %s (%v): is it running? (--socket)", sock, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	switch {
	case resp.StatusCode == http.StatusNotFound && !strings.Contains(string(body), "network-policy"):
		// A duetd from before /policy, or one outside Kubernetes mode.
		return fmt.Errorf("duetd on %s does not serve /policy: run a duetd with --kubernetes --network-policy", sock)
	case resp.StatusCode != http.StatusOK:
		return fmt.Errorf("duetd: %s", strings.TrimSpace(string(body)))
	}
	if asJSON {
		var b bytes.Buffer
		if err := json.Indent(&b, body, "", "  "); err != nil {
			return fmt.Errorf("duetd's answer is not JSON: %v", err)
		}
		body = b.Bytes()
	}
	_, err = w.Write(body)
	return err
}
