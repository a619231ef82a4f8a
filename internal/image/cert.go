package image

import (
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"time"
)

// porterCert returns the PEM certificate and key agnhost's porter serves
// TLS with (it reads ./localhost.crt and ./localhost.key): self-signed for
// localhost, 127.0.0.1 and ::1, like upstream's committed pair.
//
// It is Ed25519 from a fixed seed, and so the same bytes on every build:
// since Go 1.26 ECDSA and RSA ignore a caller's random source, so their
// keys and signatures would change each time, and with them the agnhost
// layer's digest. Go's TLS (the apiserver's proxy, which the e2e uses to
// reach porter) and OpenSSL 3 both speak Ed25519. The key guards nothing:
// upstream's is in its public repository too.
func porterCert() (crt, key []byte, err error) {
	seed := sha256.Sum256([]byte("duet agnhost porter localhost"))
	priv := ed25519.NewKeyFromSeed(seed[:])
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "localhost", Organization: []string{"duet lab"}},
		NotBefore:             epoch,
		NotAfter:              time.Date(2084, 1, 29, 16, 0, 0, 0, time.UTC), // upstream's expiry
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv6loopback, net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(nil, tmpl, tmpl, priv.Public(), priv)
	if err != nil {
		return nil, nil, err
	}
	pk, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pk}), nil
}
