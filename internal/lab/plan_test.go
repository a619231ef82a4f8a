package lab

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
)

func TestRoutedImpliesBGP(t *testing.T) {
	for _, tc := range []struct {
		in      Options
		routing string
		err     string
	}{
		{Options{Nodes: 2, Family: "ipv6", Topology: "routed"}, "bgp", ""},
		{Options{Nodes: 2, Family: "dual", Topology: "routed", Routing: "bgp"}, "bgp", ""},
		{Options{Nodes: 2, Family: "dual", Topology: "routed", Routing: "direct"}, "direct", "cannot use --routing direct"},
		{Options{Nodes: 2, Family: "ipv6"}, "direct", ""},
		{Options{Nodes: 2, Family: "ipv6", Topology: "ndp-proxy"}, "direct", ""},
		{Options{Nodes: 2, Family: "ipv4", Topology: "ndp-proxy", Routing: "bgp"}, "bgp", "--routing bgp"},
		{Options{Nodes: 2, Family: "dual", Topology: "mesh"}, "direct", "--topology \"mesh\""},
	} {
		o := tc.in.WithDefaults()
		if o.Routing != tc.routing {
			t.Errorf("%+v: routing %q, want %q", tc.in, o.Routing, tc.routing)
		}
		err := o.Validate()
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("%+v: %v", tc.in, err)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%+v: error %v, want one naming %q", tc.in, err, tc.err)
		}
	}
}

// Up checks its options before it looks at a running lab, and says which
// options differ from the running one.
func TestUpValidatesBeforeAlreadyUp(t *testing.T) {
	dir := t.TempDir()
	running := Options{Nodes: 2, PodsPerNode: 2, Family: "ipv6", Routing: "bgp", Topology: "routed"}
	s := Plan(running, dir)
	s.Ready = true
	if err := s.save(); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	// A bad flag is named as such, not hidden behind "already up".
	_, err := Up(context.Background(), Options{Nodes: 2, PodsPerNode: 2, Family: "ipv7"}, dir, dir, &out)
	if err == nil || errors.Is(err, ErrAlreadyUp) || !strings.Contains(err.Error(), "--family") {
		t.Fatalf("bad family: %v", err)
	}
	// The same lab asked for with its defaults left out: nothing to do.
	if _, err := Up(context.Background(), Options{Nodes: 2, PodsPerNode: 2, Family: "ipv6", Topology: "routed"}, dir, dir, &out); err != nil {
		t.Fatalf("same options: %v", err)
	}
	if !strings.Contains(out.String(), "nothing to do") {
		t.Fatalf("same options said %q", out.String())
	}
	// Another lab: every difference is named.
	_, err = Up(context.Background(), Options{Nodes: 3, PodsPerNode: 2, Family: "dual", Topology: "switched"}, dir, dir, &out)
	if !errors.Is(err, ErrAlreadyUp) {
		t.Fatalf("other options: %v", err)
	}
	for _, want := range []string{"--nodes 3 (the running lab has 2)", "--family dual (the running lab has ipv6)", "--routing direct (the running lab has bgp)", "--topology switched (the running lab has routed)"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}
