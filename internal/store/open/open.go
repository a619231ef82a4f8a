// Package open opens the store a configuration names, so that every binary
// picks backends the same way.
package open

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"

	"github.com/duetnet/duet/internal/config"
	"github.com/duetnet/duet/internal/store"
	"github.com/duetnet/duet/internal/store/bolt"
	"github.com/duetnet/duet/internal/store/etcd"
)

// Store opens the datastore d for read and write. etcd is reached over its
// JSON gateway, which keeps the CNI plugin lean; duetd dials gRPC itself.
func Store(d config.Datastore) (store.Store, error) {
	switch d.Type {
	case config.DatastoreBolt, "":
		path := d.Path
		if path == "" {
			path = config.DefaultBoltPath
		}
		return bolt.Open(path, bolt.Options{})
	case config.DatastoreEtcd:
		cfg, err := EtcdConfig(d)
		if err != nil {
			return nil, err
		}
		return etcd.Open(cfg)
	}
	return nil, fmt.Errorf("datastore type %q is not available in this build: use %q or %q", d.Type, config.DatastoreBolt, config.DatastoreEtcd)
}

// EtcdConfig turns the datastore's etcd settings into the etcd store's
// configuration, loading its certificates.
func EtcdConfig(d config.Datastore) (etcd.Config, error) {
	cfg := etcd.Config{Endpoints: d.Endpoints, HostLock: config.DefaultEtcdHostLock}
	if d.CAFile == "" && d.CertFile == "" {
		return cfg, nil
	}
	t := &tls.Config{MinVersion: tls.VersionTLS12}
	if d.CAFile != "" {
		pem, err := os.ReadFile(d.CAFile)
		if err != nil {
			return cfg, fmt.Errorf("datastore.caFile: %w", err)
		}
		t.RootCAs = x509.NewCertPool()
		if !t.RootCAs.AppendCertsFromPEM(pem) {
			return cfg, fmt.Errorf("datastore.caFile: %s holds no PEM certificate: give the CA certificate that signed etcd's", d.CAFile)
		}
	}
	if d.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(d.CertFile, d.KeyFile)
		if err != nil {
			return cfg, fmt.Errorf("datastore.certFile/keyFile: %w", err)
		}
		t.Certificates = []tls.Certificate{cert}
	}
	cfg.TLS = t
	return cfg, nil
}
