package main

import (
	"strings"
	"testing"
	"time"
)

func TestPeerFlag(t *testing.T) {
	var l peerList
	if err := l.Set("fd00::1/65000,password=s3cret,hold=30s,multihop=2"); err != nil {
		t.Fatal(err)
	}
	if err := l.Set("10.0.0.1/65001"); err != nil {
		t.Fatal(err)
	}
	p := l[0]
	if p.Addr.String() != "fd00::1" || p.ASN != 65000 || p.Password != "s3cret" || p.HoldTime != 30*time.Second || p.Multihop != 2 || l[1].ASN != 65001 {
		t.Fatalf("got %+v", l)
	}
	for _, bad := range []string{"fd00::1", "fd00::1/x", "nope/65000", "fd00::1/65000,hold=soon", "fd00::1/65000,colour=red"} {
		if err := l.Set(bad); err == nil || !strings.Contains(err.Error(), bad) {
			t.Errorf("%q: %v", bad, err)
		}
	}
}
