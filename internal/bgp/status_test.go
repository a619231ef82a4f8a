package bgp

import (
	"errors"
	"log/slog"
	"net/netip"
	"slices"
	"testing"

	api "github.com/osrg/gobgp/v3/api"
	gobgplog "github.com/osrg/gobgp/v3/pkg/log"
	"github.com/osrg/gobgp/v3/pkg/packet/bgp"
	"google.golang.org/protobuf/types/known/anypb"
)

func TestFill(t *testing.T) {
	caps := []*anypb.Any{
		mustAny(t, &api.MultiProtocolCapability{Family: familyIPv4}),
		mustAny(t, &api.MultiProtocolCapability{Family: familyIPv6}),
		mustAny(t, &api.GracefulRestartCapability{}),
	}
	p := &api.Peer{
		State: &api.PeerState{SessionState: api.PeerState_ESTABLISHED, RemoteCap: caps},
		AfiSafis: []*api.AfiSafi{
			{State: &api.AfiSafiState{Family: familyIPv6, Received: 10, Accepted: 9, Advertised: 5}},
			{State: &api.AfiSafiState{Family: familyIPv4, Received: 10, Accepted: 10, Advertised: 3}},
		},
	}
	both := map[string]bool{"ipv6-unicast": true, "ipv4-unicast": true}
	for _, tt := range []struct {
		gr             bool
		eor            map[string]bool
		wantAdvertised uint64
		wantEOR        bool
	}{
		// Without graceful restart nobody owes End-of-RIB.
		{gr: false, wantAdvertised: 8, wantEOR: true},
		{gr: true, eor: both, wantAdvertised: 6, wantEOR: true}, // minus one End-of-RIB per family
		{gr: true, eor: map[string]bool{"ipv6-unicast": true}, wantAdvertised: 6, wantEOR: false},
		{gr: true, wantAdvertised: 6, wantEOR: false},
	} {
		var ps PeerStatus
		fill(&ps, p, tt.gr, tt.eor)
		if ps.State != "established" || ps.Received != 20 || ps.Accepted != 19 || ps.Advertised != tt.wantAdvertised {
			t.Errorf("gr=%v: %+v, want established, 20 received, 19 accepted, %d advertised", tt.gr, ps, tt.wantAdvertised)
		}
		if ps.EndOfRIB != tt.wantEOR {
			t.Errorf("gr=%v, End-of-RIB in %v: EndOfRIB = %v, want %v", tt.gr, tt.eor, ps.EndOfRIB, tt.wantEOR)
		}
		if want := []string{"ipv6-unicast", "ipv4-unicast"}; !slices.Equal(ps.Families, want) {
			t.Errorf("families %v, want %v (IPv6 first)", ps.Families, want)
		}
	}
	var down PeerStatus
	fill(&down, &api.Peer{State: &api.PeerState{SessionState: api.PeerState_ACTIVE}}, true, both)
	if down.EndOfRIB {
		t.Error("a session that is not established has not given its table")
	}
	for s, want := range map[api.PeerState_SessionState]string{
		api.PeerState_UNKNOWN: "idle", api.PeerState_ACTIVE: "active", api.PeerState_OPENCONFIRM: "openconfirm",
	} {
		if got := stateName(s); got != want {
			t.Errorf("stateName(%v) = %q, want %q", s, got, want)
		}
	}
}

// TestLastError feeds the logger what GoBGP logs as sessions fail and
// recover, IPv6 peer first.
func TestLastError(t *testing.T) {
	l := newGobgpLogger(slog.New(slog.DiscardHandler))
	v6, v4 := netip.MustParseAddr("fd00:b6b::2"), netip.MustParseAddr("10.246.0.2")
	steps := []struct {
		level func(string, gobgplog.Fields)
		msg   string
		f     gobgplog.Fields
		peer  netip.Addr
		want  string
	}{
		{l.Debug, "failed to connect", gobgplog.Fields{"Key": "fd00:b6b::2", "Error": errors.New("connect: no route to host")},
			v6, "connect: connect: no route to host"},
		{l.Warn, "Closed an accepted connection", gobgplog.Fields{"Key": "fd00:b6b::2"},
			v6, "connect: connect: no route to host"}, // benign: kept
		{l.Debug, "state changed", gobgplog.Fields{"Key": "fd00:b6b::2", "old": "BGP_FSM_OPENCONFIRM", "new": "BGP_FSM_ESTABLISHED"},
			v6, ""},
		{l.Debug, "state changed", gobgplog.Fields{"Key": "fd00:b6b::2", "old": "BGP_FSM_ESTABLISHED", "new": "BGP_FSM_IDLE", "reason": "hold-timer-expired"},
			v6, "session went down: hold-timer-expired"},
		{l.Warn, "sent notification", gobgplog.Fields{"Key": "10.246.0.2", "Data": bgp.NewMessageError(bgp.BGP_ERROR_OPEN_MESSAGE_ERROR, bgp.BGP_ERROR_SUB_BAD_PEER_AS, nil, "as number mismatch expected 65099, received 65002")},
			v4, "sent notification: code 2(open) subcode 2(bad peer as): as number mismatch expected 65099, received 65002"},
		{l.Warn, "received notification", gobgplog.Fields{"Key": "::ffff:10.246.0.2", "Code": uint8(bgp.BGP_ERROR_CEASE), "Subcode": uint8(bgp.BGP_ERROR_SUB_ADMINISTRATIVE_SHUTDOWN), "Communicated-Reason": "maintenance"},
			v4, "received notification: code 6(cease) subcode 2(administrative shutdown): maintenance"},
		{l.Info, "Peer Up", gobgplog.Fields{"Key": "10.246.0.2"},
			v4, "received notification: code 6(cease) subcode 2(administrative shutdown): maintenance"}, // info: kept
	}
	for i, st := range steps {
		st.level(st.msg, st.f)
		if got := l.lastError(st.peer); got != st.want {
			t.Errorf("step %d (%s): lastError(%s) = %q, want %q", i, st.msg, st.peer, got, st.want)
		}
	}
}
