package connectivity

import (
	"encoding/binary"
	"net"
	"net/netip"
	"sync"
	"time"
)

// Stream sends a numbered UDP datagram from one namespace to another at a
// fixed interval and records when each arrives, so a fault (an agent
// killed, a route replaced) can be measured as the longest time nothing
// got through, not only as "it works again afterwards".
type Stream struct {
	conn net.Conn
	pc   net.PacketConn
	stop chan struct{}
	wg   sync.WaitGroup

	mu       sync.Mutex
	sent     int
	received int
	last     time.Time // last arrival, or the start
	maxGap   time.Duration
	gapAt    time.Time // when the longest gap ended
}

// StreamStats is what a stream saw.
type StreamStats struct {
	Sent, Received int
	// MaxGap is the longest time between two arrivals (or from the start
	// to the first, or from the last to Stop).
	MaxGap time.Duration
	// GapEnded is when MaxGap ended.
	GapEnded time.Time
}

// OpenStream starts sending from srcNS to a socket it opens in dstNS on
// dst, one datagram every interval, until Stop.
func OpenStream(srcNS, dstNS string, dst netip.Addr, interval time.Duration) (*Stream, error) {
	s := &Stream{stop: make(chan struct{}), last: time.Now()}
	if err := inNS(dstNS, func() (err error) { s.pc, err = net.ListenPacket("udp", hostPort(dst, 0)); return err }); err != nil {
		return nil, err
	}
	port := s.pc.LocalAddr().(*net.UDPAddr).Port
	if err := inNS(srcNS, func() (err error) { s.conn, err = net.Dial("udp", hostPort(dst, port)); return err }); err != nil {
		s.pc.Close()
		return nil, err
	}
	s.wg.Add(2)
	go s.receive()
	go s.send(interval)
	return s, nil
}

func (s *Stream) send(interval time.Duration) {
	defer s.wg.Done()
	t := time.NewTicker(interval)
	defer t.Stop()
	var buf [8]byte
	for n := uint64(0); ; n++ {
		binary.BigEndian.PutUint64(buf[:], n)
		// A send can fail while there is no route (EHOSTUNREACH, or
		// ECONNREFUSED from an earlier ICMP error): that is the gap being
		// measured, not a reason to stop.
		_, _ = s.conn.Write(buf[:])
		s.mu.Lock()
		s.sent++
		s.mu.Unlock()
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
	}
}

func (s *Stream) receive() {
	defer s.wg.Done()
	buf := make([]byte, 64)
	for {
		if _, _, err := s.pc.ReadFrom(buf); err != nil {
			return // closed by Stop
		}
		now := time.Now()
		s.mu.Lock()
		s.received++
		s.gap(now)
		s.mu.Unlock()
	}
}

// gap records the time since the last arrival; s.mu is held.
func (s *Stream) gap(now time.Time) {
	if g := now.Sub(s.last); g > s.maxGap {
		s.maxGap, s.gapAt = g, now
	}
	s.last = now
}

// Stats reports what the stream saw so far.
func (s *Stream) Stats() StreamStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return StreamStats{Sent: s.sent, Received: s.received, MaxGap: s.maxGap, GapEnded: s.gapAt}
}

// Stop ends the stream and reports what it saw, counting the time since
// the last arrival as a gap too.
func (s *Stream) Stop() StreamStats {
	close(s.stop)
	s.conn.Close()
	time.Sleep(50 * time.Millisecond) // the last datagrams in flight
	s.pc.Close()
	s.wg.Wait()
	s.mu.Lock()
	s.gap(time.Now().Add(-50 * time.Millisecond))
	s.mu.Unlock()
	return s.Stats()
}
