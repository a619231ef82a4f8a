package main

import (
	"os"
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
	if cfg, err := f.check(false); err != nil || len(cfg.Endpoints) != 2 || cfg.Endpoints[0] != "http://[fd00::1]:2379" || cfg.TLS != nil {
		t.Errorf("endpoints: %+v %v", cfg, err)
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

// TestEtcdTLSFlags: the TLS files load into the store's configuration, and
// every wrong combination or unusable file is refused with the flag named.
func TestEtcdTLSFlags(t *testing.T) {
	pki := newTestPKI(t)
	const https = "https://[::1]:2379,https://127.0.0.1:2379"
	f := etcdFlags{endpoints: https, caFile: pki.CA, certFile: pki.ClientCert, keyFile: pki.ClientKey}
	cfg, err := f.check(false)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Endpoints) != 2 || cfg.TLS == nil || cfg.TLS.RootCAs == nil || len(cfg.TLS.Certificates) != 1 {
		t.Fatalf("got %+v", cfg)
	}
	// https without files: etcd's client checks against the system's CAs.
	if cfg, err := (&etcdFlags{endpoints: https}).check(false); err != nil || cfg.TLS != nil {
		t.Errorf("https without files: %+v %v", cfg, err)
	}

	dir := t.TempDir()
	garbage := dir + "/garbage.pem"
	if err := os.WriteFile(garbage, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := dir + "/missing.pem"
	for _, c := range []struct {
		name string
		f    etcdFlags
		flag string // the error starts with it
		fix  string // and says this
	}{
		{"cert without key", etcdFlags{endpoints: https, certFile: pki.ClientCert}, "--etcd-cert-file", "--etcd-key-file"},
		{"key without cert", etcdFlags{endpoints: https, keyFile: pki.ClientKey}, "--etcd-key-file", "--etcd-cert-file"},
		{"ca with http", etcdFlags{endpoints: "https://[::1]:2379,http://127.0.0.1:2379", caFile: pki.CA}, "--etcd-ca-file", "https://"},
		{"cert with http", etcdFlags{endpoints: "http://[::1]:2379", certFile: pki.ClientCert, keyFile: pki.ClientKey}, "--etcd-cert-file", "https://"},
		{"ca without endpoints", etcdFlags{embedDir: "/d", caFile: pki.CA}, "--etcd-ca-file", "--etcd-endpoints"},
		{"ca missing", etcdFlags{endpoints: https, caFile: missing}, "--etcd-ca-file", missing},
		{"key missing", etcdFlags{endpoints: https, certFile: pki.ClientCert, keyFile: missing}, "--etcd-key-file", missing},
		{"cert missing", etcdFlags{endpoints: https, certFile: missing, keyFile: pki.ClientKey}, "--etcd-cert-file", missing},
		{"ca not PEM", etcdFlags{endpoints: https, caFile: garbage}, "--etcd-ca-file", "CA certificate"},
		{"key of another cert", etcdFlags{endpoints: https, certFile: pki.ClientCert, keyFile: pki.ServerKey}, "--etcd-cert-file", "private key"},
	} {
		_, err := c.f.check(false)
		if err == nil || !strings.HasPrefix(err.Error(), c.flag) || !strings.Contains(err.Error(), c.fix) || strings.Contains(err.Error(), "datastore.") {
			t.Errorf("%s: %v, want an error naming %s and %q", c.name, err, c.flag, c.fix)
		}
	}
}
