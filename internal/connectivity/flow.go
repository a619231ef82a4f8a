package connectivity

import (
	"bufio"
	"fmt"
	"net"
	"net/netip"
	"time"
)

// Flow is one long-lived TCP connection between two namespaces, for
// checking that established traffic survives a change (an agent restart,
// a route reconcile).
type Flow struct {
	l    net.Listener
	conn net.Conn
	peer net.Conn
	r    *bufio.Reader
}

// OpenFlow connects from srcNS to a listener it opens in dstNS on dst.
func OpenFlow(srcNS, dstNS string, dst netip.Addr) (*Flow, error) {
	f := &Flow{}
	if err := inNS(dstNS, func() (err error) { f.l, err = net.Listen("tcp", hostPort(dst, 0)); return err }); err != nil {
		return nil, err
	}
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := f.l.Accept()
		if err != nil {
			accepted <- nil
			return
		}
		// Echo each line back until the connection closes.
		go func() {
			r := bufio.NewReader(c)
			for {
				line, err := r.ReadString('\n')
				if err != nil {
					return
				}
				if _, err := c.Write([]byte(line)); err != nil {
					return
				}
			}
		}()
		accepted <- c
	}()
	port := f.l.Addr().(*net.TCPAddr).Port
	if err := inNS(srcNS, func() (err error) {
		f.conn, err = net.DialTimeout("tcp", hostPort(dst, port), 3*time.Second)
		return err
	}); err != nil {
		f.l.Close()
		return nil, err
	}
	f.peer = <-accepted
	f.r = bufio.NewReader(f.conn)
	return f, f.Exchange()
}

// Exchange sends a line and waits for its echo.
func (f *Flow) Exchange() error {
	_ = f.conn.SetDeadline(time.Now().Add(3 * time.Second))
	msg := fmt.Sprintf("duet %d\n", time.Now().UnixNano())
	if _, err := f.conn.Write([]byte(msg)); err != nil {
		return err
	}
	got, err := f.r.ReadString('\n')
	if err != nil {
		return err
	}
	if got != msg {
		return fmt.Errorf("echo %q, want %q", got, msg)
	}
	return nil
}

// Close ends the flow.
func (f *Flow) Close() {
	f.conn.Close()
	if f.peer != nil {
		f.peer.Close()
	}
	f.l.Close()
}
