package bgp

import (
	"context"
	"maps"
	"net/netip"
	"strings"
	"time"

	api "github.com/osrg/gobgp/v3/api"
)

// PeerStatus is one session as `duetctl node status` shows it.
type PeerStatus struct {
	Addr netip.Addr
	ASN  uint32
	Name string
	// State is the RFC 4271 FSM state: idle, connect, active, opensent,
	// openconfirm or established.
	State string
	// Uptime is how long the session has been established; 0 otherwise.
	Uptime time.Duration
	// Families are the address families both sides negotiated
	// ("ipv6-unicast", "ipv4-unicast"), when established.
	Families []string
	// Received, Accepted and Advertised count prefixes over all families.
	Received, Accepted, Advertised uint64
	// LastError says why the session is not established, or last went
	// down: a NOTIFICATION sent or received (a wrong AS shows as "open bad
	// peer as: as number mismatch expected 65099, received 65002"), a
	// failed connect, an expired hold timer. Empty once established.
	LastError string
	// EndOfRIB is whether the peer has given its whole table on this
	// session: its End-of-RIB marker arrived in every negotiated family,
	// or it does not do graceful restart and the session is established.
	EndOfRIB bool `json:"endOfRIB"`
}

// Peers reports every configured session, in configuration order. It is
// nil when the speaker is stopped.
func (s *Speaker) Peers() []PeerStatus {
	s.mu.Lock()
	srv, peers := s.srv, s.cfg.Peers
	eor := map[netip.Addr]map[string]bool{}
	for a, fs := range s.eor {
		eor[a] = maps.Clone(fs)
	}
	s.mu.Unlock()
	if srv == nil {
		return nil
	}
	byAddr := map[netip.Addr]*api.Peer{}
	err := srv.ListPeer(context.Background(), &api.ListPeerRequest{EnableAdvertised: true}, func(p *api.Peer) {
		if a, err := netip.ParseAddr(p.GetConf().GetNeighborAddress()); err == nil {
			byAddr[a.Unmap()] = p
		}
	})
	if err != nil {
		s.log.Warn("bgp: list peers", "err", err)
	}
	out := make([]PeerStatus, 0, len(peers))
	for _, c := range peers {
		ps := PeerStatus{Addr: c.Addr.Unmap(), ASN: c.ASN, Name: c.Name, State: "idle"}
		if p := byAddr[ps.Addr]; p != nil {
			fill(&ps, p, s.cfg.GracefulRestart, eor[ps.Addr])
		}
		if ps.State != "established" {
			ps.LastError = s.glog.lastError(ps.Addr)
		}
		out = append(out, ps)
	}
	return out
}

// fill copies a GoBGP neighbour's state into ps. gr is whether this
// node offers graceful restart; eor are the families whose End-of-RIB
// marker the peer sent on this session.
func fill(ps *PeerStatus, p *api.Peer, gr bool, eor map[string]bool) {
	st := p.GetState()
	ps.State = stateName(st.GetSessionState())
	remote := map[string]bool{}
	peerGR := false
	for _, c := range st.GetRemoteCap() {
		var mp api.MultiProtocolCapability
		if c.MessageIs(&mp) && c.UnmarshalTo(&mp) == nil {
			remote[familyName(mp.GetFamily())] = true
		}
		peerGR = peerGR || c.MessageIs(&api.GracefulRestartCapability{})
	}
	for _, af := range p.GetAfiSafis() {
		ps.Received += af.GetState().GetReceived()
		ps.Accepted += af.GetState().GetAccepted()
		adv := af.GetState().GetAdvertised()
		if gr && peerGR && adv > 0 {
			// GoBGP counts the End-of-RIB marker it sends per family
			// when both sides do graceful restart: not a prefix.
			adv--
		}
		ps.Advertised += adv
	}
	if ps.State != "established" {
		return
	}
	if up := p.GetTimers().GetState().GetUptime(); up != nil {
		ps.Uptime = time.Since(up.AsTime()).Truncate(time.Second)
	}
	ps.EndOfRIB = true
	for _, f := range families {
		if name := familyName(f); remote[name] {
			ps.Families = append(ps.Families, name)
			// GoBGP sends, and a peer owes, End-of-RIB only when both
			// sides offered graceful restart.
			if gr && peerGR && !eor[name] {
				ps.EndOfRIB = false
			}
		}
	}
}

// stateName turns GoBGP's enum (IDLE, ..., ESTABLISHED) into the RFC 4271
// name in lower case.
func stateName(s api.PeerState_SessionState) string {
	if s == api.PeerState_UNKNOWN {
		return "idle"
	}
	return strings.ToLower(s.String())
}
