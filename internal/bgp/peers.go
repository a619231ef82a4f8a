package bgp

import (
	"context"
	"fmt"
	"net/netip"

	api "github.com/osrg/gobgp/v3/api"
)

// SetPeers makes the speaker's peers exactly ps: sessions to new peers
// are added, sessions to peers no longer listed are closed. It is how the
// node-to-node mesh follows nodes joining and leaving; safe to call again
// with the same list. Before Start it only replaces the configuration.
func (s *Speaker) SetPeers(ctx context.Context, ps []Peer) error {
	s.mu.Lock()
	srv, old := s.srv, s.cfg.Peers
	s.mu.Unlock()
	want := map[netip.Addr]Peer{}
	for _, p := range ps {
		want[p.Addr.Unmap()] = p
	}
	have := map[netip.Addr]Peer{}
	for _, p := range old {
		have[p.Addr.Unmap()] = p
	}
	if srv != nil {
		for a, p := range want {
			if h, ok := have[a]; ok && h == p {
				continue
			}
			if _, ok := have[a]; ok {
				if err := srv.DeletePeer(ctx, &api.DeletePeerRequest{Address: a.String()}); err != nil {
					return fmt.Errorf("replace peer %s: %w", a, err)
				}
			}
			if err := srv.AddPeer(ctx, &api.AddPeerRequest{Peer: s.apiPeer(p)}); err != nil {
				return fmt.Errorf("add peer %s: %w", a, err)
			}
		}
		for a := range have {
			if _, ok := want[a]; !ok {
				if err := srv.DeletePeer(ctx, &api.DeletePeerRequest{Address: a.String()}); err != nil {
					return fmt.Errorf("delete peer %s: %w", a, err)
				}
			}
		}
	}
	s.mu.Lock()
	s.cfg.Peers = append([]Peer{}, ps...)
	s.mu.Unlock()
	return nil
}
