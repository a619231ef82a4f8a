package connectivity

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// EchoUntil sends ICMP echo requests to dst from a socket in the namespace
// at netnsPath, one every interval, until one is answered or limit
// passes; it returns how long that took. zone names the interface for a
// link-local dst (a pod's gateway, fe80::1%eth0). Timing starts at the
// call, so a caller measuring "from ADD's return" calls it right then.
func EchoUntil(netnsPath string, dst netip.Addr, zone string, interval, limit time.Duration) (time.Duration, error) {
	start := time.Now()
	network, proto, typ := "ip4:icmp", 1, icmp.Type(ipv4.ICMPTypeEcho)
	if dst.Is6() {
		network, proto, typ = "ip6:ipv6-icmp", 58, ipv6.ICMPTypeEchoRequest
	}
	var c *icmp.PacketConn
	if err := inNS(netnsPath, func() (err error) {
		if zone != "" {
			// Resolve the zone here: by name it would be looked up later
			// in whatever namespace the sending thread is in.
			ifi, err := net.InterfaceByName(zone)
			if err != nil {
				return err
			}
			zone = strconv.Itoa(ifi.Index)
		}
		c, err = icmp.ListenPacket(network, "")
		return err
	}); err != nil {
		return 0, err
	}
	defer c.Close()
	id := int(time.Now().UnixNano() & 0xffff)
	buf := make([]byte, 1500)
	for seq := 1; time.Since(start) < limit; seq++ {
		msg, _ := (&icmp.Message{Type: typ, Body: &icmp.Echo{ID: id, Seq: seq, Data: []byte("duet")}}).Marshal(nil)
		if _, err := c.WriteTo(msg, &net.IPAddr{IP: dst.AsSlice(), Zone: zone}); err != nil {
			time.Sleep(interval) // e.g. no route yet, or a tentative source
			continue
		}
		_ = c.SetReadDeadline(time.Now().Add(interval))
		for {
			n, _, err := c.ReadFrom(buf)
			if err != nil {
				break
			}
			m, err := icmp.ParseMessage(proto, buf[:n])
			if err != nil {
				continue
			}
			if e, ok := m.Body.(*icmp.Echo); ok && e.ID == id && (m.Type == ipv4.ICMPTypeEchoReply || m.Type == ipv6.ICMPTypeEchoReply) {
				return time.Since(start), nil
			}
		}
	}
	return 0, fmt.Errorf("no echo reply from %s within %s", dst, limit)
}
