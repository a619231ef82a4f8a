package kernel

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
)

// Neigh is a neighbour (ARP or NDP) entry.
type Neigh struct {
	IP  netip.Addr
	MAC net.HardwareAddr
	Dev string
	// Permanent entries never expire and are never re-resolved.
	Permanent bool
}

// ReplacePermanentNeigh pins IP to MAC on dev, so the first packet to a
// gateway needs no ARP or ND round trip and nothing can poison the entry.
// Equivalent to: ip neigh replace IP lladdr MAC dev DEV nud permanent
func (n *NS) ReplacePermanentNeigh(nb Neigh) error {
	return n.onLink(nb.Dev, "set neighbour "+nb.IP.String()+" on", func(l netlink.Link) error {
		return n.h.NeighSet(&netlink.Neigh{
			LinkIndex:    l.Attrs().Index,
			Family:       family(nb.IP),
			State:        netlink.NUD_PERMANENT,
			IP:           nb.IP.AsSlice(),
			HardwareAddr: nb.MAC,
		})
	})
}

// Neighs lists the neighbour entries of dev, both families.
// Equivalent to: ip neigh show dev DEV
func (n *NS) Neighs(dev string) ([]Neigh, error) {
	l, err := n.link(dev)
	if err != nil {
		return nil, err
	}
	nns, err := retry(func() ([]netlink.Neigh, error) { return n.h.NeighList(l.Attrs().Index, netlink.FAMILY_ALL) })
	if err != nil {
		return nil, fmt.Errorf("list neighbours of %s in %s: %w", dev, n, err)
	}
	out := make([]Neigh, 0, len(nns))
	for _, nn := range nns {
		ip, ok := netip.AddrFromSlice(nn.IP)
		if !ok {
			continue
		}
		if nn.Family == netlink.FAMILY_V4 {
			ip = ip.Unmap()
		}
		out = append(out, Neigh{
			IP:        ip,
			MAC:       nn.HardwareAddr,
			Dev:       dev,
			Permanent: nn.State&netlink.NUD_PERMANENT != 0,
		})
	}
	return out, nil
}

func family(a netip.Addr) int {
	if a.Is4() {
		return netlink.FAMILY_V4
	}
	return netlink.FAMILY_V6
}
