package hardening

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"
)

// datagram is what a listener received: the peer's address and payload.
type datagram struct {
	From    netip.Addr
	Payload string
}

// listener is a UDP socket in one namespace that records every datagram,
// and echoes it back when asked to.
type listener struct {
	Where string
	ch    chan datagram
}

// listen binds a UDP socket of fam (6 or 4) to every address of n on port.
func listen(t *testing.T, n *netNS, fam int, port int, echo bool) *listener {
	t.Helper()
	network, addr := "udp6", fmt.Sprintf("[::]:%d", port)
	if fam == 4 {
		network, addr = "udp4", fmt.Sprintf("0.0.0.0:%d", port)
	}
	var c net.PacketConn
	n.do(t, func() (err error) { c, err = net.ListenPacket(network, addr); return err })
	l := &listener{Where: fmt.Sprintf("%s %s", n.Name, addr), ch: make(chan datagram, 64)}
	t.Cleanup(func() { c.Close() })
	go func() {
		buf := make([]byte, 2048)
		for {
			k, from, err := c.ReadFrom(buf)
			if err != nil {
				close(l.ch)
				return
			}
			ap := from.(*net.UDPAddr).AddrPort()
			l.ch <- datagram{From: ap.Addr().Unmap(), Payload: string(buf[:k])}
			if echo {
				_, _ = c.WriteTo(buf[:k], from)
			}
		}
	}()
	return l
}

// none asserts that nothing arrives within d.
func (l *listener) none(t *testing.T, d time.Duration, what string) {
	t.Helper()
	select {
	case got := <-l.ch:
		t.Errorf("%s: %s received %q from %s; it must not arrive", what, l.Where, got.Payload, got.From)
	case <-time.After(d):
	}
}

// want waits up to d for payload and returns the datagram; anything else
// received before it is an error.
func (l *listener) want(t *testing.T, d time.Duration, payload, what string) (datagram, bool) {
	t.Helper()
	deadline := time.After(d)
	for {
		select {
		case got := <-l.ch:
			if got.Payload == payload {
				return got, true
			}
			t.Errorf("%s: %s received %q from %s while waiting for %q", what, l.Where, got.Payload, got.From, payload)
		case <-deadline:
			t.Errorf("%s: %s received nothing within %v", what, l.Where, d)
			return datagram{}, false
		}
	}
}

// drain returns what arrived so far without waiting.
func (l *listener) drain() []datagram {
	var out []datagram
	for {
		select {
		case got := <-l.ch:
			out = append(out, got)
		default:
			return out
		}
	}
}

// exchange sends payload from a fresh UDP socket in n to dst, through n's
// own stack, and waits for the echo; it retries a few times, since only
// addresses, not first-packet latency, are under test here.
func exchange(t *testing.T, n *netNS, dst netip.AddrPort, payload string) error {
	t.Helper()
	var err error
	n.do(t, func() error {
		var c *net.UDPConn
		if c, err = net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(dst)); err != nil {
			return nil
		}
		defer c.Close()
		buf := make([]byte, 2048)
		for range 5 {
			if _, err = c.Write([]byte(payload)); err != nil {
				continue
			}
			_ = c.SetReadDeadline(time.Now().Add(time.Second))
			var k int
			if k, err = c.Read(buf); err == nil {
				if string(buf[:k]) == payload {
					return nil
				}
				err = fmt.Errorf("echo was %q", buf[:k])
			}
		}
		err = errors.Join(fmt.Errorf("no echo from %s", dst), err)
		return nil
	})
	return err
}
