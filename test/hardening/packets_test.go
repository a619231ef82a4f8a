package hardening

import (
	"encoding/binary"
	"net"
	"net/netip"
	"testing"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"
)

// Hand-built frames, so a test pod can send what its kernel never would: a
// source address or MAC that is not its own, router advertisements,
// redirects and neighbour advertisements.

// frameHdr is what every frame a test crafts starts with.
type frameHdr struct {
	SrcMAC, DstMAC net.HardwareAddr
	Src, Dst       netip.Addr
}

func ether(h frameHdr, etherType uint16) []byte {
	b := make([]byte, 14)
	copy(b[0:6], h.DstMAC)
	copy(b[6:12], h.SrcMAC)
	binary.BigEndian.PutUint16(b[12:], etherType)
	return b
}

// checksum is the Internet checksum of the concatenation of parts.
func checksum(parts ...[]byte) uint16 {
	var all []byte
	for _, p := range parts {
		all = append(all, p...)
	}
	var s uint32
	for i := 0; i+1 < len(all); i += 2 {
		s += uint32(binary.BigEndian.Uint16(all[i:]))
	}
	if len(all)%2 == 1 {
		s += uint32(all[len(all)-1]) << 8
	}
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return ^uint16(s)
}

// ipv6Frame wraps an upper-layer message (its checksum field at csumOff
// still zero) in IPv6 and Ethernet, and fills in the checksum.
func ipv6Frame(h frameHdr, proto uint8, hopLimit uint8, msg []byte, csumOff int) []byte {
	src, dst := h.Src.As16(), h.Dst.As16()
	pseudo := make([]byte, 40)
	copy(pseudo[0:16], src[:])
	copy(pseudo[16:32], dst[:])
	binary.BigEndian.PutUint32(pseudo[32:], uint32(len(msg)))
	pseudo[39] = proto
	binary.BigEndian.PutUint16(msg[csumOff:], checksum(pseudo, msg))
	ip := make([]byte, 40)
	ip[0] = 0x60
	binary.BigEndian.PutUint16(ip[4:], uint16(len(msg)))
	ip[6], ip[7] = proto, hopLimit
	copy(ip[8:24], src[:])
	copy(ip[24:40], dst[:])
	return append(append(ether(h, unix.ETH_P_IPV6), ip...), msg...)
}

func udpMsg(sport, dport uint16, payload string) []byte {
	u := make([]byte, 8, 8+len(payload))
	binary.BigEndian.PutUint16(u[0:], sport)
	binary.BigEndian.PutUint16(u[2:], dport)
	binary.BigEndian.PutUint16(u[4:], uint16(8+len(payload)))
	return append(u, payload...)
}

// udpFrame is Ethernet + IPv6 or IPv4 (by h.Src) + UDP from port sport
// carrying payload.
func udpFrame(h frameHdr, sport, dport uint16, payload string) []byte {
	u := udpMsg(sport, dport, payload)
	if h.Src.Is6() {
		return ipv6Frame(h, unix.IPPROTO_UDP, 64, u, 6)
	}
	src, dst := h.Src.As4(), h.Dst.As4()
	pseudo := append(append(append([]byte{}, src[:]...), dst[:]...), 0, unix.IPPROTO_UDP, 0, 0)
	binary.BigEndian.PutUint16(pseudo[10:], uint16(len(u)))
	binary.BigEndian.PutUint16(u[6:], checksum(pseudo, u))
	ip := make([]byte, 20)
	ip[0], ip[8], ip[9] = 0x45, 64, unix.IPPROTO_UDP
	binary.BigEndian.PutUint16(ip[2:], uint16(20+len(u)))
	copy(ip[12:16], src[:])
	copy(ip[16:20], dst[:])
	binary.BigEndian.PutUint16(ip[10:], checksum(ip))
	return append(append(ether(h, unix.ETH_P_IP), ip...), u...)
}

// arpReply says "spa is at sha" to tha/tpa.
func arpReply(h frameHdr, sha net.HardwareAddr, spa netip.Addr, tha net.HardwareAddr, tpa netip.Addr) []byte {
	a := []byte{0, 1, 8, 0, 6, 4, 0, 2}
	s, d := spa.As4(), tpa.As4()
	a = append(append(append(append(a, sha...), s[:]...), tha...), d[:]...)
	return append(ether(h, unix.ETH_P_ARP), a...)
}

// lla is a source (1) or target (2) link-layer address option.
func lla(kind byte, mac net.HardwareAddr) []byte { return append([]byte{kind, 1}, mac...) }

// icmpv6Frame is a neighbour discovery message with hop limit 255, as a
// receiver requires: typ, code 0, then body.
func icmpv6Frame(h frameHdr, typ byte, body []byte) []byte {
	return ipv6Frame(h, unix.IPPROTO_ICMPV6, 255, append([]byte{typ, 0, 0, 0}, body...), 2)
}

// raBody is a router advertisement: lifetime 1800 s, and an on-link,
// autonomous prefix 2001:db8:bad::/64.
func raBody(mac net.HardwareAddr) []byte {
	b := []byte{64, 0, 0x07, 0x08, 0, 0, 0, 0, 0, 0, 0, 0}
	pi := []byte{3, 4, 64, 0xc0, 0, 1, 0x51, 0x80, 0, 0, 0x38, 0x40, 0, 0, 0, 0}
	prefix := netip.MustParseAddr("2001:db8:bad::").As16()
	return append(append(append(b, pi...), prefix[:]...), lla(1, mac)...)
}

// redirectBody says "for dest, use target (at mac)".
func redirectBody(target, dest netip.Addr, mac net.HardwareAddr) []byte {
	t, d := target.As16(), dest.As16()
	return append(append(append([]byte{0, 0, 0, 0}, t[:]...), d[:]...), lla(2, mac)...)
}

// naBody is an unsolicited neighbour advertisement with the override flag:
// "target is at mac".
func naBody(target netip.Addr, mac net.HardwareAddr) []byte {
	t := target.As16()
	return append(append([]byte{0x20, 0, 0, 0}, t[:]...), lla(2, mac)...)
}

// sendFrames writes raw frames out of ifName in n through an AF_PACKET
// socket: nothing in n's stack checks or rewrites them.
func sendFrames(t *testing.T, n *netNS, ifName string, frames ...[]byte) {
	t.Helper()
	n.do(t, func() error {
		ifi, err := net.InterfaceByName(ifName)
		if err != nil {
			return err
		}
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		for _, f := range frames {
			sa := &unix.SockaddrLinklayer{Ifindex: ifi.Index, Halen: 6}
			copy(sa.Addr[:], f[0:6])
			if err := unix.Sendto(fd, f, 0, sa); err != nil {
				return err
			}
		}
		return nil
	})
}

// sendICMPv6 sends an ICMPv6 message through the pod's own stack (a raw
// ICMPv6 socket bound to src, hop limit 255; the kernel computes the
// checksum), the way an RA daemon in a container would.
func sendICMPv6(t *testing.T, n *netNS, ifName string, src, dst netip.Addr, typ ipv6.ICMPType, body []byte) {
	t.Helper()
	n.do(t, func() error {
		ifi, err := net.InterfaceByName(ifName)
		if err != nil {
			return err
		}
		c, err := icmp.ListenPacket("ip6:ipv6-icmp", src.String()+"%"+ifName)
		if err != nil {
			return err
		}
		defer c.Close()
		p := c.IPv6PacketConn()
		for _, err := range []error{p.SetHopLimit(255), p.SetMulticastHopLimit(255), p.SetMulticastInterface(ifi)} {
			if err != nil {
				return err
			}
		}
		b, err := (&icmp.Message{Type: typ, Body: &icmp.RawBody{Data: body}}).Marshal(nil)
		if err != nil {
			return err
		}
		_, err = c.WriteTo(b, &net.IPAddr{IP: dst.AsSlice(), Zone: ifName})
		return err
	})
}
