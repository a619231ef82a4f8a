package bgp

import (
	"context"
	"net/netip"
	"os"
	"strconv"
	"strings"

	api "github.com/osrg/gobgp/v3/api"
	"golang.org/x/sys/unix"
)

// Stop ends every session and the listener. It is safe to call when
// stopped, and Start may be called again afterwards.
//
// Without GracefulRestart this is GoBGP's StopBgp: a NOTIFICATION (Cease,
// Peer De-configured) to each peer, which withdraws this node's routes at
// once everywhere. That is right when duetd goes away for good.
//
// With GracefulRestart, Stop is for a restart and must not withdraw
// anything, but GoBGP v3.37.0 has no way to say so: StopBgpRequest is
// empty and StopBgp always sends that NOTIFICATION, and under RFC 4724 a
// peer that receives one drops the routes instead of keeping them stale
// (under RFC 8538, if negotiated, GoBGP even turns it into a Hard Reset).
// Upstream added StopBgpRequest.allow_graceful_restart after v3.37.0
// (osrg/gobgp#2998). So Stop first shuts down this process's TCP
// connections to the peers (shutdown(2) on the sockets, found in
// /proc/self/fd) and only then calls StopBgp, whose NOTIFICATIONs then
// have no connection to go out on. Peers see what they would see if duetd
// were killed: the TCP connection closed with no NOTIFICATION. They keep
// this node's routes, marked stale, for RestartTime, and refresh them when
// the next Start reconnects and sends End-of-RIB.
//
// GoBGP's Serve loop has no way to end, so each Start leaves one idle
// goroutine (and an empty BgpServer) behind after Stop.
//
// Learned is empty after Stop and fills again as sessions come back, so a
// reconciler should not act on it right after a restart: the kernel routes
// it installed before are still valid until the peers have re-sent theirs.
func (s *Speaker) Stop() {
	s.life.Lock()
	defer s.life.Unlock()
	s.mu.Lock()
	srv, stopWatch := s.srv, s.stopWatch
	s.srv, s.stopWatch, s.have = nil, nil, nil
	s.mu.Unlock()
	if srv == nil {
		return
	}
	if s.cfg.GracefulRestart {
		n, err := s.closeSessions()
		if err != nil {
			s.log.Warn("bgp: closing sessions for graceful restart; peers may withdraw this node's routes", "err", err)
		}
		s.log.Info("bgp: closed sessions without NOTIFICATION for graceful restart", "connections", n)
	}
	srv.StopBgp(context.Background(), &api.StopBgpRequest{})
	stopWatch()
	s.log.Info("bgp speaker stopped", "gracefulRestart", s.cfg.GracefulRestart)
}

// closeSessions shuts down, in both directions, every TCP connection of
// this process between a configured peer's address and the BGP port (179
// at the peer for sessions GoBGP dialled, the listen port here for ones it
// accepted). GoBGP still owns and later closes the descriptors; shutdown
// only makes the kernel send FIN now and fail GoBGP's later writes. The
// descriptor numbers come from /proc/self/fd and are checked just before
// use; a descriptor closed and reused in between would have to be a TCP
// connection to the same peer and port to be touched.
func (s *Speaker) closeSessions() (int, error) {
	peers := map[netip.Addr]bool{}
	s.mu.Lock()
	configured := s.cfg.Peers
	s.mu.Unlock()
	for _, p := range configured {
		peers[p.Addr.Unmap()] = true
	}
	listen := int(s.cfg.ListenPort)
	if listen == 0 {
		listen = DefaultPort
	}
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return 0, err
	}
	n := 0
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if link, err := os.Readlink("/proc/self/fd/" + e.Name()); err != nil || !strings.HasPrefix(link, "socket:") {
			continue
		}
		if typ, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE); err != nil || typ != unix.SOCK_STREAM {
			continue
		}
		remote, err := unix.Getpeername(fd)
		if err != nil {
			continue // a listener, or not connected
		}
		local, err := unix.Getsockname(fd)
		if err != nil {
			continue
		}
		raddr, rport := sockaddr(remote)
		_, lport := sockaddr(local)
		if !peers[raddr] || (rport != DefaultPort && lport != listen) {
			continue
		}
		if err := unix.Shutdown(fd, unix.SHUT_RDWR); err == nil {
			n++
		}
	}
	return n, nil
}

// sockaddr returns a TCP socket address's IP (IPv4-mapped unmapped) and port.
func sockaddr(sa unix.Sockaddr) (netip.Addr, int) {
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrFrom4(sa.Addr), sa.Port
	case *unix.SockaddrInet6:
		return netip.AddrFrom16(sa.Addr).Unmap(), sa.Port
	}
	return netip.Addr{}, 0
}
