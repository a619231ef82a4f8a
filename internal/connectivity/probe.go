package connectivity

import (
	"bufio"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
)

// inNS runs f with the calling thread in the namespace at path: sockets
// made inside stay in that namespace after f returns.
func inNS(path string, f func() error) error {
	n, err := ns.GetNS(path)
	if err != nil {
		return err
	}
	defer n.Close()
	return n.Do(func(ns.NetNS) error { return f() })
}

func hostPort(a netip.Addr, port int) string { return net.JoinHostPort(a.String(), strconv.Itoa(port)) }

// ping sends one ICMP echo from the namespace src to dst.
func ping(src string, dst netip.Addr) (time.Duration, string, error) {
	start := time.Now()
	out, err := exec.Command("ip", "netns", "exec", nsName(src), "ping", "-c", "1", "-W", "2", dst.String()).CombinedOutput()
	if err != nil {
		return 0, "", fmt.Errorf("ping %s: %s", dst, lastLine(string(out)))
	}
	// ping prints "time=0.045 ms"; fall back to wall time.
	if i := strings.Index(string(out), "time="); i >= 0 {
		f := strings.Fields(string(out)[i+5:])
		if len(f) > 0 {
			if ms, err := strconv.ParseFloat(f[0], 64); err == nil {
				return time.Duration(ms * float64(time.Millisecond)), "", nil
			}
		}
	}
	return time.Since(start), "", nil
}

// tcp connects from src to a listener in dstNS at dst, exchanges a line,
// and returns the source address the listener saw.
func tcp(srcNS, dstNS string, dst netip.Addr) (time.Duration, string, error) {
	var l net.Listener
	if err := inNS(dstNS, func() (err error) {
		l, err = net.Listen("tcp", hostPort(dst, 0))
		return err
	}); err != nil {
		return 0, "", fmt.Errorf("listen: %w", err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port
	seen := make(chan string, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			seen <- ""
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(3 * time.Second))
		line, _ := bufio.NewReader(c).ReadString('\n')
		_, _ = c.Write([]byte("pong:" + line))
		seen <- c.RemoteAddr().(*net.TCPAddr).AddrPort().Addr().Unmap().String()
	}()
	start := time.Now()
	var conn net.Conn
	if err := inNS(srcNS, func() (err error) {
		conn, err = net.DialTimeout("tcp", hostPort(dst, port), 3*time.Second)
		return err
	}); err != nil {
		return 0, "", fmt.Errorf("connect %s: %w", dst, err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := conn.Write([]byte("ping\n")); err != nil {
		return 0, "", err
	}
	if _, err := bufio.NewReader(conn).ReadString('\n'); err != nil {
		return 0, "", fmt.Errorf("no reply from %s: %w", dst, err)
	}
	d := time.Since(start)
	return d, <-seen, nil
}

// udp sends a datagram from src to a socket in dstNS and waits for the
// echo; it returns the source the receiver saw.
func udp(srcNS, dstNS string, dst netip.Addr) (time.Duration, string, error) {
	var pc net.PacketConn
	if err := inNS(dstNS, func() (err error) {
		pc, err = net.ListenPacket("udp", hostPort(dst, 0))
		return err
	}); err != nil {
		return 0, "", fmt.Errorf("listen: %w", err)
	}
	defer pc.Close()
	port := pc.LocalAddr().(*net.UDPAddr).Port
	seen := make(chan string, 1)
	go func() {
		buf := make([]byte, 64)
		_ = pc.SetDeadline(time.Now().Add(3 * time.Second))
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			seen <- ""
			return
		}
		_, _ = pc.WriteTo(buf[:n], from)
		seen <- from.(*net.UDPAddr).AddrPort().Addr().Unmap().String()
	}()
	start := time.Now()
	var conn net.Conn
	if err := inNS(srcNS, func() (err error) {
		conn, err = net.Dial("udp", hostPort(dst, port))
		return err
	}); err != nil {
		return 0, "", err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := conn.Write([]byte("ping")); err != nil {
		return 0, "", err
	}
	buf := make([]byte, 64)
	if _, err := conn.Read(buf); err != nil {
		return 0, "", fmt.Errorf("no echo from %s: %w", dst, err)
	}
	return time.Since(start), <-seen, nil
}

func nsName(path string) string {
	if i := strings.LastIndexByte(path, '/'); i >= 0 {
		return path[i+1:]
	}
	return path
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
