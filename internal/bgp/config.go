// Package bgp is duetd's BGP speaker: GoBGP (github.com/osrg/gobgp/v3)
// run as a library inside duetd, behind a small family-blind API in
// net/netip types. It advertises the node's blocks in IPv4 and IPv6
// unicast, each with the node's underlay address of the block's family as
// next hop, and reports what peers advertise (Learned) for duetd to install
// through the same reconciler as every other route. The package never
// touches the kernel's routing table itself.
//
// Sockets: GoBGP listens from its own Serve goroutine and dials from
// per-peer goroutines, on whatever OS thread the Go scheduler picks, so a
// Speaker works in the network namespace of the whole process. duetd runs
// in the node's namespace (the host's, or a lab node's via ip netns exec);
// a thread switched into another namespace does not take GoBGP with it.
// The privileged tests re-exec the test binary inside a namespace for the
// same reason.
package bgp

import (
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// Defaults for zero values in Config and Peer.
const (
	DefaultPort        = 179
	DefaultHoldTime    = 90 * time.Second  // RFC 4271's suggestion
	DefaultRestartTime = 120 * time.Second // what BIRD and FRR use
	// maxRestartTime is the largest Restart Time the 12-bit field of the
	// Graceful Restart capability can carry (RFC 4724).
	maxRestartTime = 4095 * time.Second
	// maxPasswordLen is the kernel's TCP_MD5SIG_MAXKEYLEN.
	maxPasswordLen = 80
)

// Config is the speaker's whole configuration. Zero values take defaults.
type Config struct {
	// ASN is this node's AS number.
	ASN uint32
	// RouterID is the BGP identifier. It is an IPv4 address even on an
	// IPv6-only node, where duetd has to make one up (RFC 6286 only asks
	// that it be unique within the AS).
	RouterID netip.Addr
	// ListenPort is the TCP port to accept sessions on: 0 means 179, -1
	// means do not listen and only connect out.
	ListenPort int32
	// Peers are the routers and nodes to peer with, in one list for both
	// families: every session carries IPv4 and IPv6 unicast, whatever the
	// family of the address it runs over.
	Peers []Peer
	// GracefulRestart advertises the Graceful Restart capability (RFC 4724)
	// with forwarding preserved, so peers keep this node's routes while
	// duetd restarts (the kernel keeps forwarding meanwhile), and makes
	// Stop close sessions the way a restart does: without NOTIFICATION.
	GracefulRestart bool
	// RestartTime is how long peers keep this node's routes after the
	// session drops; 0 means DefaultRestartTime. Only with GracefulRestart.
	RestartTime time.Duration
}

// Peer is one BGP neighbour. Its session is eBGP when ASN differs from the
// node's, iBGP (the node-to-node mesh) when it is the same.
type Peer struct {
	Addr netip.Addr
	ASN  uint32
	// Password turns on TCP MD5 signatures (RFC 2385).
	Password string
	// HoldTime is offered in OPEN; the session uses the smaller of the two
	// sides'. 0 means DefaultHoldTime.
	HoldTime time.Duration
	// Multihop is the TTL for eBGP sessions to peers that are not on-link;
	// 0 keeps the eBGP default of 1.
	Multihop uint32
	// Name is for status and logs.
	Name string
}

// Validate reports every problem in c, each naming its field the way a
// config file would ("peers[1].asn: ...").
func (c Config) Validate() error {
	var errs []error
	add := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
	}
	if msg := checkASN(c.ASN); msg != "" {
		add("asn", "%s", msg)
	}
	switch {
	case !c.RouterID.IsValid():
		add("routerID", "missing: BGP needs an IPv4 address as identifier, even on an IPv6-only node")
	case !c.RouterID.Is4():
		add("routerID", "%s is not an IPv4 address: the BGP identifier is 32 bits", c.RouterID)
	case c.RouterID.IsUnspecified():
		add("routerID", "0.0.0.0 is not a valid BGP identifier")
	}
	if c.ListenPort < -1 || c.ListenPort > 65535 {
		add("listenPort", "%d is not a port (0 means %d, -1 means do not listen)", c.ListenPort, DefaultPort)
	}
	if c.RestartTime < 0 || c.RestartTime > maxRestartTime {
		add("restartTime", "%s is outside 0..%s, what the Graceful Restart capability can carry", c.RestartTime, maxRestartTime)
	}
	seen := map[netip.Addr]int{}
	for i, p := range c.Peers {
		field := fmt.Sprintf("peers[%d]", i)
		a := p.Addr.Unmap()
		switch {
		case !a.IsValid():
			add(field+".addr", "missing")
		case a.IsUnspecified() || a.IsMulticast():
			add(field+".addr", "%s is not a unicast address", a)
		case a.Is6() && a.IsLinkLocalUnicast():
			add(field+".addr", "%s: link-local peers (BGP unnumbered) are not supported yet", p.Addr)
		default:
			if j, dup := seen[a]; dup {
				add(field+".addr", "%s is already peers[%d]", a, j)
			}
			seen[a] = i
		}
		if msg := checkASN(p.ASN); msg != "" {
			add(field+".asn", "%s", msg)
		}
		if len(p.Password) > maxPasswordLen {
			add(field+".password", "%d bytes is longer than TCP MD5's %d", len(p.Password), maxPasswordLen)
		}
		if p.HoldTime != 0 && (p.HoldTime < 3*time.Second || p.HoldTime > 65535*time.Second) {
			add(field+".holdTime", "%s is outside 3s..65535s (RFC 4271); 0 means %s", p.HoldTime, DefaultHoldTime)
		}
		if p.Multihop > 255 {
			add(field+".multihop", "TTL %d is more than 255", p.Multihop)
		}
		if p.Multihop != 0 && p.ASN == c.ASN {
			add(field+".multihop", "only applies to eBGP; this peer is in the node's own AS %d", c.ASN)
		}
	}
	return errors.Join(errs...)
}

// checkASN returns why asn cannot be a peer's or the node's AS, or "".
func checkASN(asn uint32) string {
	switch asn {
	case 0:
		return "0 is not an AS number"
	case 23456:
		return "23456 is AS_TRANS, reserved for 2-byte speakers (RFC 6793)"
	case 65535, 4294967295:
		return fmt.Sprintf("%d is reserved (RFC 7300)", asn)
	}
	return ""
}

// seconds rounds d up to whole seconds, the unit BGP timers travel in, or
// returns def when d is zero.
func seconds(d, def time.Duration) uint64 {
	if d == 0 {
		d = def
	}
	return uint64((d + time.Second - 1) / time.Second)
}
