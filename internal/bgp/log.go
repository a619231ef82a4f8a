package bgp

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync"

	gobgplog "github.com/osrg/gobgp/v3/pkg/log"
	"github.com/osrg/gobgp/v3/pkg/packet/bgp"
)

// gobgpLogger adapts GoBGP's logger interface to slog, and on the way
// keeps the last error per peer: GoBGP's API reports a session's state but
// not why it is not established (a wrong AS, a refused or unanswered
// connection), and that reason is what `duetctl node status` must show.
// GoBGP tags peer messages with the field "Key": the neighbour's address.
type gobgpLogger struct {
	log *slog.Logger
	mu  sync.Mutex
	// lastErr is keyed by the neighbour address with any IPv4-mapped form
	// unmapped.
	lastErr map[netip.Addr]string
}

var _ gobgplog.Logger = (*gobgpLogger)(nil)

func newGobgpLogger(log *slog.Logger) *gobgpLogger {
	return &gobgpLogger{log: log.With("component", "gobgp"), lastErr: map[netip.Addr]string{}}
}

// lastError returns what last went wrong with the session to peer, or ""
// once the session is established.
func (l *gobgpLogger) lastError(peer netip.Addr) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lastErr[peer.Unmap()]
}

// benign are warnings that are part of normal operation, not a reason a
// session is down: connection collisions (RFC 4271 6.8) resolve this way.
var benign = map[string]bool{
	"Closed an accepted connection":                true,
	"active conn is closed to avoid being blocked": true,
}

// note records msg as the peer's last error when it says why the session
// is not up, and clears it when the session is established.
func (l *gobgpLogger) note(level slog.Level, msg string, f gobgplog.Fields) {
	key, _ := f["Key"].(string)
	peer, err := netip.ParseAddr(key)
	if err != nil {
		return
	}
	var reason string
	switch {
	case msg == "state changed":
		// Debug-level, but the only message with the reason a session
		// left Established (hold timer, notification, connection closed).
		if strings.HasSuffix(fmt.Sprint(f["new"]), "ESTABLISHED") {
			l.set(peer, "")
			return
		}
		if strings.HasSuffix(fmt.Sprint(f["old"]), "ESTABLISHED") {
			reason = fmt.Sprintf("session went down: %v", f["reason"])
		}
	case msg == "failed to connect": // Debug-level too: a peer that never answers
		reason = fmt.Sprintf("connect: %v", f["Error"])
	case msg == "received notification" || msg == "sent notification":
		reason = msg + ": " + notification(f)
	case level >= slog.LevelWarn && !benign[msg]:
		reason = msg + describe(f)
	}
	if reason != "" {
		l.set(peer, reason)
	}
}

func (l *gobgpLogger) set(peer netip.Addr, reason string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lastErr[peer.Unmap()] = reason
}

// notification renders a NOTIFICATION's code, subcode and GoBGP's own
// explanation ("open bad peer as: as number mismatch expected 65099,
// received 65002").
func notification(f gobgplog.Fields) string {
	if e, ok := f["Data"].(*bgp.MessageError); ok { // sent: GoBGP's reason
		return fmt.Sprintf("%s: %s", bgp.NewNotificationErrorCode(e.TypeCode, e.SubTypeCode), e.Message)
	}
	code, _ := f["Code"].(uint8)
	sub, _ := f["Subcode"].(uint8)
	s := bgp.NewNotificationErrorCode(code, sub).String()
	if r, _ := f["Communicated-Reason"].(string); r != "" {
		s += ": " + r // RFC 8203 shutdown communication
	}
	return s
}

// describe renders a message's fields, minus the bookkeeping ones, for
// warnings this file does not know.
func describe(f gobgplog.Fields) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(f)) {
		switch k {
		case "Topic", "Key", "State", gobgplog.FieldFacility:
			continue
		}
		parts = append(parts, fmt.Sprintf("%s=%v", k, f[k]))
	}
	if len(parts) == 0 {
		return ""
	}
	return " (" + strings.Join(parts, " ") + ")"
}

// noise are GoBGP warnings about features duet does not use, demoted to
// debug: GoBGP sets TTL 255 on every listener for peers with TTL security
// (RFC 5082), which duet does not configure, and warns where the kernel
// refuses (EOPNOTSUPP on the test machine).
var noise = map[string]bool{
	"cannot set TTL (255) for TCPListener": true,
}

func (l *gobgpLogger) emit(level slog.Level, msg string, f gobgplog.Fields) {
	if noise[msg] {
		level = slog.LevelDebug
	}
	l.note(level, msg, f)
	if !l.log.Enabled(context.Background(), level) {
		return
	}
	attrs := make([]any, 0, 2*len(f))
	for _, k := range slices.Sorted(maps.Keys(f)) {
		attrs = append(attrs, k, f[k])
	}
	l.log.Log(context.Background(), level, msg, attrs...)
}

// Panic keeps GoBGP's contract: it is called on code-logic bugs.
func (l *gobgpLogger) Panic(msg string, f gobgplog.Fields) {
	l.emit(slog.LevelError, msg, f)
	panic("gobgp: " + msg)
}

// Fatal does not exit: duetd decides that. GoBGP calls it only for
// internal inconsistencies and for a gRPC listener this package never
// asks for.
func (l *gobgpLogger) Fatal(msg string, f gobgplog.Fields) { l.emit(slog.LevelError, msg, f) }
func (l *gobgpLogger) Error(msg string, f gobgplog.Fields) { l.emit(slog.LevelError, msg, f) }
func (l *gobgpLogger) Warn(msg string, f gobgplog.Fields)  { l.emit(slog.LevelWarn, msg, f) }
func (l *gobgpLogger) Info(msg string, f gobgplog.Fields)  { l.emit(slog.LevelInfo, msg, f) }
func (l *gobgpLogger) Debug(msg string, f gobgplog.Fields) { l.emit(slog.LevelDebug, msg, f) }

// SetLevel is ignored: the slog handler filters.
func (l *gobgpLogger) SetLevel(gobgplog.LogLevel) {}

// GetLevel is always Debug so GoBGP hands over the debug messages that
// carry a session's failure reason; emit drops what slog does not want.
func (l *gobgpLogger) GetLevel() gobgplog.LogLevel { return gobgplog.DebugLevel }
