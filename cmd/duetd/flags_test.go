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

func TestEtcdFlags(t *testing.T) {
	var l urlList
	if err := l.Set("http://[fd00::1]:2379, http://127.0.0.1:2379"); err != nil || l.String() != "http://[fd00::1]:2379,http://127.0.0.1:2379" {
		t.Fatalf("--etcd-listen: %v %v", l.String(), err)
	}
	for _, bad := range []string{"[fd00::1]:2379", "http://[fd00::1]", "unix:///run/etcd.sock", "http://host:2379/path"} {
		if err := l.Set(bad); err == nil || !strings.Contains(err.Error(), bad) {
			t.Errorf("--etcd-listen %q: %v", bad, err)
		}
	}
	f := etcdFlags{endpoints: "http://[fd00::1]:2379,https://10.0.0.1:2379"}
	if eps, err := f.check(false); err != nil || len(eps) != 2 || eps[0] != "http://[fd00::1]:2379" {
		t.Errorf("endpoints: %v %v", eps, err)
	}
	for _, c := range []struct {
		f       etcdFlags
		boltSet bool
		flag    string
	}{
		{etcdFlags{endpoints: "fd00::1:2379"}, false, "--etcd-endpoints"},
		{etcdFlags{only: true}, false, "--etcd-only"},
		{etcdFlags{only: true, embedDir: "/d", endpoints: "http://[::1]:2379"}, false, "--etcd-only"},
		{etcdFlags{listen: urlList{{Scheme: "http", Host: "[::1]:2379"}}}, false, "--etcd-listen"},
		{etcdFlags{embedDir: "/d"}, true, "--datastore-path"},
	} {
		if _, err := c.f.check(c.boltSet); err == nil || !strings.HasPrefix(err.Error(), c.flag) {
			t.Errorf("%+v: %v, want an error naming %s", c.f, err, c.flag)
		}
	}
}
