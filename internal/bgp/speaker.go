package bgp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/config/oc"
	"github.com/osrg/gobgp/v3/pkg/server"
)

// connectRetry, in seconds, paces GoBGP's dials to a peer that is not up:
// the first 1-2 s after the session goes down, the next ones every 1-2
// connectRetry, each given connectRetry-1 s to connect. GoBGP's default
// of 120 s would leave a peer that never answers unreported for minutes.
const connectRetry = 10

// Speaker is the node's BGP speaker. It holds the desired state (the
// blocks to advertise and the next hops to give them) whether or not the
// GoBGP server is running, so duetd can set it before Start and after a
// restart without replaying anything.
type Speaker struct {
	cfg  Config
	log  *slog.Logger
	glog *gobgpLogger
	// changed has room for one signal: writers never block, and a reader
	// that was busy sees one signal for any number of changes.
	changed chan struct{}

	// life serialises Start and Stop, so a Start never races the old
	// server still closing its listener.
	life      sync.Mutex
	mu        sync.Mutex
	srv       *server.BgpServer // nil when stopped
	stopWatch context.CancelFunc
	want      map[netip.Prefix]bool
	nextHop4  netip.Addr
	nextHop6  netip.Addr
	// have is what the running server advertises, with the next hop used.
	have map[netip.Prefix]netip.Addr
	// eor holds, per peer, the families whose End-of-RIB marker arrived
	// on the current session (cleared when the session leaves
	// established); see Synced.
	eor map[netip.Addr]map[string]bool
}

// New returns a speaker for cfg. It starts nothing and does not validate:
// Start does both.
func New(cfg Config, log *slog.Logger) *Speaker {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Speaker{
		cfg:     cfg,
		log:     log,
		glog:    newGobgpLogger(log),
		changed: make(chan struct{}, 1),
		want:    map[netip.Prefix]bool{},
	}
}

// Start validates the configuration and starts GoBGP in this process:
// the listener (unless ListenPort is -1), one session per peer carrying
// IPv6 and IPv4 unicast, and the paths set by Advertise so far. ctx bounds
// the start-up only; the speaker runs until Stop. If any step fails,
// Start stops what it started and returns the error.
func (s *Speaker) Start(ctx context.Context) error {
	if err := s.cfg.Validate(); err != nil {
		return fmt.Errorf("bgp config: %w", err)
	}
	s.life.Lock()
	defer s.life.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv != nil {
		return errors.New("bgp speaker already started")
	}
	srv := server.NewBgpServer(server.LoggerOption(s.glog))
	go srv.Serve() // GoBGP's event loop; it has no way to end (see Stop)
	port := s.cfg.ListenPort
	if port == 0 {
		port = DefaultPort
	}
	global := &api.Global{
		Asn:        s.cfg.ASN,
		RouterId:   s.cfg.RouterID.String(),
		ListenPort: port,
		// The global RIB's tables, in GoBGP's config enum (not AFI/SAFI).
		Families: []uint32{
			uint32(oc.AfiSafiTypeToIntMap[oc.AFI_SAFI_TYPE_IPV6_UNICAST]),
			uint32(oc.AfiSafiTypeToIntMap[oc.AFI_SAFI_TYPE_IPV4_UNICAST]),
		},
	}
	if err := srv.StartBgp(ctx, &api.StartBgpRequest{Global: global}); err != nil {
		srv.StopBgp(context.Background(), &api.StopBgpRequest{})
		return fmt.Errorf("start bgp (port %d): %w", port, err)
	}
	watchCtx, stopWatch := context.WithCancel(context.Background())
	fail := func(err error) error {
		stopWatch()
		srv.StopBgp(context.Background(), &api.StopBgpRequest{})
		return err
	}
	// Watch before adding peers so no learned path goes unsignalled.
	watch := &api.WatchEventRequest{
		Peer: &api.WatchEventRequest_Peer{},
		Table: &api.WatchEventRequest_Table{Filters: []*api.WatchEventRequest_Table_Filter{
			{Type: api.WatchEventRequest_Table_Filter_BEST},
			{Type: api.WatchEventRequest_Table_Filter_EOR},
		}},
	}
	if err := srv.WatchEvent(watchCtx, watch, s.onEvent); err != nil {
		return fail(fmt.Errorf("watch bgp events: %w", err))
	}
	for i, p := range s.cfg.Peers {
		if err := srv.AddPeer(ctx, &api.AddPeerRequest{Peer: s.apiPeer(p)}); err != nil {
			return fail(fmt.Errorf("peers[%d] %s: %w", i, p.Addr, err))
		}
	}
	s.srv, s.stopWatch, s.have = srv, stopWatch, map[netip.Prefix]netip.Addr{}
	if s.eor == nil {
		s.eor = map[netip.Addr]map[string]bool{}
	}
	if err := s.sync(ctx); err != nil {
		s.srv, s.stopWatch, s.have = nil, nil, nil
		return fail(err)
	}
	s.log.Info("bgp speaker started", "asn", s.cfg.ASN, "routerID", s.cfg.RouterID, "port", port,
		"peers", len(s.cfg.Peers), "gracefulRestart", s.cfg.GracefulRestart)
	return nil
}

// apiPeer is the GoBGP neighbour for p: both unicast families, and the
// Graceful Restart capability with forwarding preserved when configured.
func (s *Speaker) apiPeer(p Peer) *api.Peer {
	ap := &api.Peer{
		Conf: &api.PeerConf{
			NeighborAddress: p.Addr.Unmap().String(),
			PeerAsn:         p.ASN,
			AuthPassword:    p.Password,
			Description:     p.Name,
		},
		Timers: &api.Timers{Config: &api.TimersConfig{
			HoldTime:     seconds(p.HoldTime, DefaultHoldTime),
			ConnectRetry: connectRetry,
		}},
	}
	if p.Multihop > 0 {
		ap.EbgpMultihop = &api.EbgpMultihop{Enabled: true, MultihopTtl: p.Multihop}
	}
	for _, f := range families {
		ap.AfiSafis = append(ap.AfiSafis, &api.AfiSafi{
			Config:            &api.AfiSafiConfig{Family: f, Enabled: true},
			MpGracefulRestart: &api.MpGracefulRestart{Config: &api.MpGracefulRestartConfig{Enabled: s.cfg.GracefulRestart}},
		})
	}
	if s.cfg.GracefulRestart {
		rt := uint32(seconds(s.cfg.RestartTime, DefaultRestartTime))
		ap.GracefulRestart = &api.GracefulRestart{
			Enabled:     true,
			RestartTime: rt,
			// Every start is announced as a restart (R and F bits, RFC
			// 4724 4.1): duetd cannot tell a first start from a restart,
			// the kernel kept forwarding either way, and a peer holding
			// no stale routes just ignores the bits. GoBGP then sends its
			// paths once the peers' End-of-RIB arrived, or after this.
			LocalRestarting: true,
			DeferralTime:    rt,
		}
	}
	return ap
}

// onEvent runs on GoBGP's watcher goroutine: it signals Changed for best
// paths and End-of-RIB markers from peers, records the markers for
// Synced, and logs session changes.
func (s *Speaker) onEvent(r *api.WatchEventResponse) {
	if pe := r.GetPeer(); pe != nil && pe.GetType() == api.WatchEventResponse_PeerEvent_STATE {
		st := pe.GetPeer().GetState()
		s.log.Info("bgp peer state", "peer", st.GetNeighborAddress(), "asn", st.GetPeerAsn(), "state", stateName(st.GetSessionState()))
		if a, err := netip.ParseAddr(st.GetNeighborAddress()); err == nil && st.GetSessionState() != api.PeerState_ESTABLISHED {
			// A new session owes a new End-of-RIB.
			s.mu.Lock()
			delete(s.eor, a.Unmap())
			s.mu.Unlock()
		}
		return
	}
	signal := false
	for _, p := range r.GetTable().GetPaths() {
		a, err := netip.ParseAddr(p.GetNeighborIp())
		if err != nil || a.IsUnspecified() {
			continue
		}
		signal = true
		if p.GetNlri() == nil { // GoBGP's shape of an End-of-RIB marker
			f := familyName(p.GetFamily())
			s.log.Info("bgp end-of-rib", "peer", a.Unmap(), "family", f)
			s.mu.Lock()
			if s.eor[a.Unmap()] == nil {
				s.eor[a.Unmap()] = map[string]bool{}
			}
			s.eor[a.Unmap()][f] = true
			s.mu.Unlock()
		}
	}
	if signal {
		select {
		case s.changed <- struct{}{}:
		default:
		}
	}
}

// Synced reports whether every configured peer has given its whole table
// on its current session: an End-of-RIB marker (RFC 4724 section 2) in
// each family both sides negotiated, from a peer that offers graceful
// restart; an established session from one that does not (it sends no
// marker, and RFC 4724 4.1 leaves it out of the wait too). A restarted
// duetd keeps the routes it installed before until Synced, so flows do
// not break while its sessions come back; per peer, so one slow router
// is waited for and a fast one is not mistaken for all. With no peers it
// is true. It is false when the speaker is stopped.
func (s *Speaker) Synced() bool {
	ps := s.Peers()
	if ps == nil { // stopped
		return false
	}
	for _, p := range ps {
		if !p.EndOfRIB {
			return false
		}
	}
	return true
}

// Changed signals when the routes Learned returns may have changed, so
// duetd can reconcile at once instead of polling. Signals coalesce.
func (s *Speaker) Changed() <-chan struct{} { return s.changed }

// Learned returns the best path to each destination that peers advertise,
// both families, IPv6 first; the node's own blocks are left out. It is
// empty when the speaker is stopped.
func (s *Speaker) Learned() []Route {
	s.mu.Lock()
	srv := s.srv
	s.mu.Unlock()
	if srv == nil {
		return nil
	}
	var out []Route
	for _, f := range families {
		err := srv.ListPath(context.Background(), &api.ListPathRequest{TableType: api.TableType_GLOBAL, Family: f}, func(d *api.Destination) {
			for _, p := range d.GetPaths() {
				if !p.GetBest() {
					continue
				}
				r, ok, err := routeOf(p)
				if err != nil {
					s.log.Warn("bgp: unusable path", "prefix", d.GetPrefix(), "err", err)
				}
				if ok {
					out = append(out, r)
				}
			}
		})
		if err != nil {
			s.log.Warn("bgp: list paths", "family", familyName(f), "err", err)
		}
	}
	sortRoutes(out)
	return out
}
