package kubelab

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"time"
)

// This file makes the lab cluster's PKI with crypto/x509: one CA, the API
// server's serving certificate, a client certificate per component with
// the identity RBAC and the Node authorizer expect, the service-account
// key pair, and a kubeconfig per client. ECDSA P-256 throughout: cheap to
// make, and every component accepts it.

type issuer struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

type leaf struct {
	name   string // file stem under pki/
	cn     string
	orgs   []string
	server bool
	ips    []netip.Addr
	dns    []string
}

func newKey() (*ecdsa.PrivateKey, error) { return ecdsa.GenerateKey(elliptic.P256(), rand.Reader) }

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	return n
}

func newCA(dir string) (issuer, error) {
	key, err := newKey()
	if err != nil {
		return issuer{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(), Subject: pkix.Name{CommonName: "duet-lab-ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().AddDate(1, 0, 0),
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature, BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return issuer{}, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return issuer{}, err
	}
	if err := writePEM(filepath.Join(dir, "ca.crt"), "CERTIFICATE", der); err != nil {
		return issuer{}, err
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return issuer{}, err
	}
	return issuer{cert, key}, writePEM(filepath.Join(dir, "ca.key"), "EC PRIVATE KEY", kder)
}

func (ca issuer) issue(dir string, l leaf) error {
	key, err := newKey()
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(), Subject: pkix.Name{CommonName: l.cn, Organization: l.orgs},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().AddDate(1, 0, 0),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		DNSNames:    l.dns,
	}
	if l.server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	}
	for _, a := range l.ips {
		tmpl.IPAddresses = append(tmpl.IPAddresses, net.IP(a.AsSlice()))
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		return err
	}
	if err := writePEM(filepath.Join(dir, l.name+".crt"), "CERTIFICATE", der); err != nil {
		return err
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	return writePEM(filepath.Join(dir, l.name+".key"), "EC PRIVATE KEY", kder)
}

func writePEM(path, typ string, der []byte) error {
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600)
}

// clients are the lab's kubeconfig identities: file stem, CN, groups.
func clients(nodes []string) []leaf {
	ls := []leaf{
		{name: "admin", cn: "duet-lab-admin", orgs: []string{"system:masters"}},
		{name: "controller-manager", cn: "system:kube-controller-manager"},
		{name: "scheduler", cn: "system:kube-scheduler"},
		{name: "kube-proxy", cn: "system:kube-proxy", orgs: []string{"system:node-proxier"}},
		{name: "apiserver-kubelet-client", cn: "kube-apiserver-kubelet-client", orgs: []string{"system:masters"}},
	}
	for _, n := range nodes {
		ls = append(ls, leaf{name: "kubelet-" + n, cn: "system:node:" + n, orgs: []string{"system:nodes"}})
	}
	return ls
}

// makePKI writes the CA, every certificate, the service-account keys and
// the kubeconfigs: server is the API server's URL for clients inside the
// lab, hostServer the one for the host's kubeconfig.
func makePKI(p paths, o Options, apiIPs []netip.Addr, nodes []string, server, hostServer string) error {
	dir := p.pki()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(p.kubeconfig("x")), 0o700); err != nil {
		return err
	}
	ca, err := newCA(dir)
	if err != nil {
		return err
	}
	ips := append([]netip.Addr{netip.MustParseAddr("::1"), netip.MustParseAddr("127.0.0.1"), HostAPIAddr()}, apiIPs...)
	ips = append(ips, o.KubernetesService()...)
	svc := []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc." + ClusterDomain}
	if err := ca.issue(dir, leaf{name: "apiserver", cn: "kube-apiserver", server: true, ips: ips, dns: svc}); err != nil {
		return err
	}
	for _, l := range clients(nodes) {
		if err := ca.issue(dir, l); err != nil {
			return err
		}
		if l.name == "apiserver-kubelet-client" {
			continue
		}
		if err := writeKubeconfig(p.kubeconfig(l.name), server, dir, l.name); err != nil {
			return err
		}
	}
	if err := writeKubeconfig(p.kubeconfig("host"), hostServer, dir, "admin"); err != nil {
		return err
	}
	sa, err := newKey()
	if err != nil {
		return err
	}
	kder, err := x509.MarshalECPrivateKey(sa)
	if err != nil {
		return err
	}
	pder, err := x509.MarshalPKIXPublicKey(&sa.PublicKey)
	if err != nil {
		return err
	}
	if err := writePEM(filepath.Join(dir, "sa.key"), "EC PRIVATE KEY", kder); err != nil {
		return err
	}
	return writePEM(filepath.Join(dir, "sa.pub"), "PUBLIC KEY", pder)
}

// writeKubeconfig writes a kubeconfig naming files, not embedding them,
// so it stays readable and the keys stay in pki/.
func writeKubeconfig(path, server, pki, user string) error {
	kc := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: duet-lab
  cluster:
    server: %s
    certificate-authority: %s
users:
- name: %s
  user:
    client-certificate: %s
    client-key: %s
contexts:
- name: duet-lab
  context: {cluster: duet-lab, user: %s}
current-context: duet-lab
`, server, filepath.Join(pki, "ca.crt"), user, filepath.Join(pki, user+".crt"), filepath.Join(pki, user+".key"), user)
	return os.WriteFile(path, []byte(kc), 0o600)
}

// apiURL is https://ADDR:6443 for an address of either family.
func apiURL(a netip.Addr) string {
	return "https://" + netip.AddrPortFrom(a, APIPort).String()
}
