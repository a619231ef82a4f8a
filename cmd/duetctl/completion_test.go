package main

import (
	"bytes"
	"strings"
	"testing"
)

// complete runs cobra's hidden __complete command, as the shell scripts
// of `duetctl completion bash` do, and returns the offered values.
func complete(t *testing.T, args ...string) []string {
	t.Helper()
	root := rootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&bytes.Buffer{})
	root.SetArgs(append([]string{"__complete"}, args...))
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	var vals []string
	for _, l := range strings.Split(out.String(), "\n") {
		if l == "" || strings.HasPrefix(l, ":") {
			continue
		}
		v, _, _ := strings.Cut(l, "\t")
		vals = append(vals, v)
	}
	return vals
}

func TestFlagValueCompletion(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"lab", "up", "--family", ""}, "dual ipv6 ipv4"},
		{[]string{"lab", "up", "--routing", ""}, "direct vxlan bgp"},
		{[]string{"lab", "up", "--topology", ""}, "switched routed ndp-proxy"},
		{[]string{"lab", "up", "--proxy-mode", ""}, "nftables iptables"},
		{[]string{"doctor", "--format", ""}, "table json"},
		// No lab is up at this datadir: nothing to offer, and no error.
		{[]string{"node", "status", "--lab-datadir", t.TempDir(), "--lab", ""}, ""},
	} {
		got := strings.Join(complete(t, tc.args...), " ")
		if got != tc.want {
			t.Errorf("%v: offered %q, want %q", tc.args, got, tc.want)
		}
	}
}
