// Helpers that send traffic: host target addresses, one-shot pings and
// TCP exchanges from inside namespaces.
//
// Privileged: run as root with
//
//	go test ./test/e2e/
//
// (see main_privileged_test.go).

package e2e

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"

	"github.com/duetnet/duet/internal/kernel/kerneltest"
)

// inNS runs fn in the namespace at path ("" for the host). A socket made
// there stays there, so listeners and dialers can be used from anywhere.
func inNS(path string, fn func() error) error {
	if path == "" {
		return fn()
	}
	return ns.WithNetNSPath(path, func(ns.NetNS) error { return fn() })
}

// hostTarget puts addresses on the host, on one end of a veth pair of its
// own (both ends up, no DAD), removed when the test ends: pods reach them
// by their default route, as they would any host address.
func hostTarget(t *testing.T, addrs ...netip.Prefix) []netip.Addr {
	t.Helper()
	name := kerneltest.Name("e2eh")
	kerneltest.Run(t, "ip", "link", "add", name, "type", "veth", "peer", "name", name+"p")
	kerneltest.DeleteLinkOnCleanup(t, name)
	var out []netip.Addr
	for _, a := range addrs {
		kerneltest.Run(t, "ip", "addr", "add", a.String(), "dev", name, "nodad")
		out = append(out, a.Addr())
	}
	kerneltest.Run(t, "ip", "link", "set", name+"p", "up")
	kerneltest.Run(t, "ip", "link", "set", name, "up")
	return out
}

// targetPrefixes are test n's host target addresses for fam, IPv6 first.
func targetPrefixes(fam string, n int) []netip.Prefix {
	var out []netip.Prefix
	for _, v6 := range families(fam) {
		if v6 {
			out = append(out, netip.MustParsePrefix(fmt.Sprintf("fd00:e2e:ffff::%x/128", n)))
		} else {
			out = append(out, netip.MustParsePrefix(fmt.Sprintf("10.250.190.%d/32", n)))
		}
	}
	return out
}

// ping sends one echo request from the namespace nsName ("" for the
// host) and fails the test unless it is answered: no retry.
func ping(t *testing.T, nsName string, dst netip.Addr) {
	t.Helper()
	args := []string{"ping", "-c1", "-W2", dst.String()}
	if nsName != "" {
		args = append([]string{"ip", "netns", "exec", nsName}, args...)
	}
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Errorf("first ping failed: %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// tcpExchange opens one TCP connection from the namespace at from to dst
// in the namespace at to ("" for the host), with no retry, and checks that
// a line goes each way.
func tcpExchange(t *testing.T, from, to string, dst netip.Addr) {
	t.Helper()
	what := fmt.Sprintf("TCP %q -> %s in %q", from, dst, to)
	if err := tryTCP(from, to, dst); err != nil {
		t.Errorf("%s: %v", what, err)
	}
}

func tryTCP(from, to string, dst netip.Addr) error {
	var ln net.Listener
	if err := inNS(to, func() (err error) {
		ln, err = net.Listen("tcp", netip.AddrPortFrom(dst, 0).String())
		return err
	}); err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	defer ln.Close()
	deadline := time.Now().Add(3 * time.Second)
	served := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			served <- err
			return
		}
		defer c.Close()
		c.SetDeadline(deadline)
		line, err := bufio.NewReader(c).ReadString('\n')
		if err == nil {
			_, err = io.WriteString(c, "ack "+line)
		}
		served <- err
	}()
	var c net.Conn
	if err := inNS(from, func() (err error) {
		d := net.Dialer{Timeout: 2 * time.Second}
		c, err = d.Dial("tcp", ln.Addr().String())
		return err
	}); err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	defer c.Close()
	c.SetDeadline(deadline)
	msg := fmt.Sprintf("hello %s\n", dst)
	if _, err := io.WriteString(c, msg); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	reply, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return fmt.Errorf("read: %w", err)
	}
	if reply != "ack "+msg {
		return fmt.Errorf("got %q, want %q", reply, "ack "+msg)
	}
	select {
	case err := <-served:
		return err
	case <-time.After(time.Until(deadline)):
		return errors.New("server side did not finish")
	}
}

// connectivity checks every pair of pods and each pod with each host
// address, both ways, in the given families: one ping each (no retry) and
// one TCP exchange each.
func connectivity(t *testing.T, pods []*pod, hostAddrs []netip.Addr, fams []bool) {
	t.Helper()
	for _, v6 := range fams {
		for _, a := range pods {
			aAddr, ok := a.addr(v6)
			if !ok {
				t.Errorf("pod %s has no %s address", a.id, famName(v6))
				continue
			}
			for _, b := range pods {
				if b == a {
					continue
				}
				if bAddr, ok := b.addr(v6); ok {
					ping(t, a.ns, bAddr)
					tcpExchange(t, a.path, b.path, bAddr)
				}
			}
			for _, h := range hostAddrs {
				if h.Is6() == v6 {
					ping(t, a.ns, h)
					tcpExchange(t, a.path, "", h)
				}
			}
			ping(t, "", aAddr)
			tcpExchange(t, "", a.path, aAddr)
		}
	}
}
