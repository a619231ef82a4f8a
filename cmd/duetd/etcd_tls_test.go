package main

import (
	"context"
	"net"
	"net/url"
	"testing"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"

	"github.com/duetnet/duet/internal/store"
)

// startTLSEtcd runs an etcd that serves clients over https only and asks
// them for a certificate signed by pki's CA (etcd --client-cert-auth).
// internal/etcdserver serves plain http, so this uses etcd's embed itself.
func startTLSEtcd(t *testing.T, pki testPKI) string {
	t.Helper()
	var client, peer url.URL
	for _, host := range []string{"[::1]:0", "127.0.0.1:0"} {
		l1, err := net.Listen("tcp", host)
		if err != nil {
			continue
		}
		l2, err := net.Listen("tcp", host)
		if err != nil {
			l1.Close()
			continue
		}
		client = url.URL{Scheme: "https", Host: l1.Addr().String()}
		peer = url.URL{Scheme: "http", Host: l2.Addr().String()}
		l1.Close()
		l2.Close()
		break
	}
	if client.Host == "" {
		t.Skip("no loopback address to listen on")
	}
	ec := embed.NewConfig()
	ec.Dir, ec.ZapLoggerBuilder = t.TempDir(), embed.NewZapLoggerBuilder(zap.NewNop())
	ec.ListenClientUrls, ec.AdvertiseClientUrls = []url.URL{client}, []url.URL{client}
	ec.ListenPeerUrls, ec.AdvertisePeerUrls = []url.URL{peer}, []url.URL{peer}
	ec.InitialCluster = ec.InitialClusterFromName(ec.Name)
	ec.ClientTLSInfo.CertFile, ec.ClientTLSInfo.KeyFile = pki.ServerCert, pki.ServerKey
	ec.ClientTLSInfo.TrustedCAFile, ec.ClientTLSInfo.ClientCertAuth = pki.CA, true
	e, err := embed.StartEtcd(ec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		t.Fatal(err)
	case <-time.After(30 * time.Second):
		t.Fatal("etcd not ready after 30s")
	}
	return client.String()
}

// TestEtcdTLS: with --etcd-ca-file, --etcd-cert-file and --etcd-key-file,
// duetd's store and its watch both reach an etcd that requires client
// certificates; without them, neither does.
func TestEtcdTLS(t *testing.T) {
	pki := newTestPKI(t)
	ep := startTLSEtcd(t, pki)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	f := etcdFlags{endpoints: ep, caFile: pki.CA, certFile: pki.ClientCert, keyFile: pki.ClientKey}
	cfg, err := f.check(false)
	if err != nil {
		t.Fatal(err)
	}
	// What duetd runs: one client for the store and the mirror's watches.
	es, err := newEtcdStore(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer es.Close()
	mirror := es.mirror(nil)
	go mirror.Run(ctx)
	changed := mirror.Changed()
	select {
	case <-changed:
	case <-time.After(15 * time.Second):
		t.Fatal("the mirror did not list over https within 15s")
	}
	st, err := es.open()
	if err != nil {
		t.Fatal(err)
	}
	uctx, ucancel := context.WithTimeout(ctx, 10*time.Second)
	defer ucancel()
	node := []byte(`{"name":"tls","addrs":["fd00::7"],"routing":"direct"}`)
	if err := st.Update(uctx, func(tx store.Tx) error { return tx.Put("nodes/tls", node) }); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if nodes, _, ok := (mirrorCache{mirror}).Cluster(); ok && len(nodes) == 1 && nodes[0].Name == "tls" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the mirror did not see a node put over https within 5s")
		}
		time.Sleep(20 * time.Millisecond)
	}

	// Without a client certificate etcd refuses the handshake; without
	// the CA, etcd's certificate is not trusted.
	noCert, err := (&etcdFlags{endpoints: ep, caFile: pki.CA}).check(false)
	if err != nil {
		t.Fatal(err)
	}
	if es, err := newEtcdStore(noCert); err == nil {
		if st, err := es.open(); err == nil {
			vctx, vcancel := context.WithTimeout(ctx, 3*time.Second)
			err = st.View(vctx, func(tx store.Tx) error { _, _, err := tx.Get("nodes/tls"); return err })
			vcancel()
			if err == nil {
				t.Error("read the store without a client certificate")
			}
		}
		es.Close()
	}
	noTLSCfg := cfg
	noTLSCfg.TLS = nil
	noTLS, err := newEtcdStore(noTLSCfg)
	if err != nil {
		t.Fatal(err)
	}
	defer noTLS.Close()
	m := noTLS.mirror(nil)
	go m.Run(ctx)
	select {
	case <-m.Changed():
		t.Error("a mirror without the CA and client certificate listed")
	case <-time.After(2 * time.Second):
	}
}
