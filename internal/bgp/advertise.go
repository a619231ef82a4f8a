package bgp

import (
	"context"
	"errors"
	"fmt"
	"net/netip"

	api "github.com/osrg/gobgp/v3/api"
)

// Advertise sets the whole set of blocks this node advertises, both
// families in one list: blocks not advertised yet are added, blocks no
// longer in the set are withdrawn, the rest are left alone, so calling it
// again with the same set sends nothing. Before Start it only records the
// set. Invalid prefixes are reported and skipped; the others still apply.
func (s *Speaker) Advertise(prefixes []netip.Prefix) error {
	var errs []error
	want := make(map[netip.Prefix]bool, len(prefixes))
	for _, p := range prefixes {
		if !p.IsValid() || p.Addr().Is4In6() || p.Addr().Zone() != "" {
			errs = append(errs, fmt.Errorf("advertise: %v is not a plain IPv4 or IPv6 prefix", p))
			continue
		}
		want[p.Masked()] = true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.want = want
	if s.srv != nil {
		errs = append(errs, s.sync(context.Background()))
	}
	return errors.Join(errs...)
}

// SetNextHops gives the node's underlay addresses: the one of each family
// becomes the next hop of the blocks of that family, so an IPv4 block is
// reached over IPv4 and an IPv6 block over IPv6, whatever family the
// session runs on, and peers need no extended next hop (RFC 8950). A
// family with no address advertises the session's local address, which is
// right when the session is of that family. Paths already advertised
// follow a change at once.
func (s *Speaker) SetNextHops(addrs []netip.Addr) error {
	var v4, v6 netip.Addr
	for _, a := range addrs {
		a = a.Unmap()
		if !a.IsValid() || a.IsUnspecified() || a.IsMulticast() || a.IsLinkLocalUnicast() {
			return fmt.Errorf("next hop %v: not a routable unicast address", a)
		}
		slot := &v6
		if a.Is4() {
			slot = &v4
		}
		if slot.IsValid() && *slot != a {
			return fmt.Errorf("next hops: %s and %s are of one family; give one of each", *slot, a)
		}
		*slot = a
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nextHop4, s.nextHop6 = v4, v6
	if s.srv == nil {
		return nil
	}
	return s.sync(context.Background())
}

// nextHopFor returns the configured next hop of p's family, or the zero
// Addr (the session's local address).
func (s *Speaker) nextHopFor(p netip.Prefix) netip.Addr {
	if p.Addr().Is4() {
		return s.nextHop4
	}
	return s.nextHop6
}

// sync makes the running server advertise exactly s.want with the current
// next hops. Called with s.mu held. A re-added path replaces the old one
// in place (same prefix, same local source), so a next-hop change is one
// UPDATE per prefix, not a withdrawal and an announcement.
func (s *Speaker) sync(ctx context.Context) error {
	var errs []error
	for p := range s.have {
		if s.want[p] {
			continue
		}
		path, err := pathFor(p, s.have[p])
		if err == nil {
			err = s.srv.DeletePath(ctx, &api.DeletePathRequest{TableType: api.TableType_GLOBAL, Family: path.Family, Path: path})
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("withdraw %s: %w", p, err))
			continue
		}
		delete(s.have, p)
	}
	for p := range s.want {
		nh := s.nextHopFor(p)
		if old, ok := s.have[p]; ok && old == nh {
			continue
		}
		path, err := pathFor(p, nh)
		if err == nil {
			_, err = s.srv.AddPath(ctx, &api.AddPathRequest{TableType: api.TableType_GLOBAL, Path: path})
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("advertise %s: %w", p, err))
			continue
		}
		s.have[p] = nh
	}
	return errors.Join(errs...)
}
