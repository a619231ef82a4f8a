package ipam

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"

	"github.com/duetnet/duet/internal/store"
)

const handlesPrefix = "handles/"

// Handle names one attachment: the key that makes ADD idempotent, DEL
// exact and GC possible.
type Handle struct {
	Network     string `json:"network"`
	ContainerID string `json:"containerID"`
	IfName      string `json:"ifName"`
}

func (h Handle) key() string {
	return handlesPrefix + h.Network + "/" + h.ContainerID + "/" + h.IfName
}

func (h Handle) String() string { return h.Network + "/" + h.ContainerID + "/" + h.IfName }

// IP is one address of an allocation.
type IP struct {
	// Address with the pool's prefix length.
	Address netip.Prefix `json:"address"`
	Block   netip.Prefix `json:"block"`
	// Gateway is the pool's gateway address (see Pool.Gateway).
	Gateway netip.Addr `json:"gateway"`
}

// Allocation is what one attachment holds.
type Allocation struct {
	Handle
	Node  string `json:"node"`
	NetNS string `json:"netns,omitempty"`
	// MAC is set when an address was derived from it (Assign MAC); the pod
	// interface must then use it.
	MAC string `json:"mac,omitempty"`
	IPs []IP   `json:"ips"`
	// AllowedSources are the pod's own extra source prefixes (CNI_ARGS),
	// kept so DEL and GC can remove exactly what ADD allowed.
	AllowedSources []netip.Prefix `json:"allowedSources,omitempty"`
}

// Request asks for one address of each family in Families, in order.
type Request struct {
	Handle   Handle
	Node     string
	NetNS    string
	Families []Family
	// Pools to allocate from, in order of preference.
	Pools []Pool
	// Rand supplies MAC addresses for Assign MAC.
	Rand io.Reader
	// AllowedSources are recorded with the allocation (see Allocation).
	AllowedSources []netip.Prefix
}

// ErrExhausted is returned (wrapped) when no pool of a family has room.
var ErrExhausted = errors.New("address pool exhausted")

// Get returns the allocation of h, if there is one.
func Get(tx store.Tx, h Handle) (Allocation, bool, error) {
	raw, ok, err := tx.Get(h.key())
	if err != nil || !ok {
		return Allocation{}, false, err
	}
	var a Allocation
	if err := json.Unmarshal(raw, &a); err != nil {
		return Allocation{}, false, fmt.Errorf("store key %s is corrupt: %w", h.key(), err)
	}
	return a, true, nil
}

// List returns every allocation; network "" means all networks.
func List(tx store.Tx, network string) ([]Allocation, error) {
	prefix := handlesPrefix
	if network != "" {
		prefix += network + "/"
	}
	kvs, err := tx.List(prefix)
	if err != nil {
		return nil, err
	}
	out := make([]Allocation, 0, len(kvs))
	for _, kv := range kvs {
		var a Allocation
		if err := json.Unmarshal(kv.Value, &a); err != nil {
			return nil, fmt.Errorf("store key %s is corrupt: %w", kv.Key, err)
		}
		out = append(out, a)
	}
	return out, nil
}

// Allocate gives req.Handle one address per requested family. Asking again
// for the same handle returns the same addresses: a runtime that retries
// ADD, or a plugin killed after the commit, never gets a second set.
func Allocate(tx store.Tx, req Request) (Allocation, error) {
	if p, ok := tx.(store.Prefetcher); ok && req.Node != "" {
		// Everything an allocation from an existing block reads, in one
		// round trip.
		if err := p.Prefetch([]string{req.Handle.key()}, []string{blocksPrefix + req.Node + "/"}); err != nil {
			return Allocation{}, err
		}
	}
	if a, ok, err := Get(tx, req.Handle); err != nil || ok {
		if ok && req.NetNS != "" && a.NetNS != req.NetNS {
			a.NetNS = req.NetNS
			return a, putAllocation(tx, a)
		}
		return a, err
	}
	if req.Node == "" || strings.Contains(req.Node, "/") {
		return Allocation{}, &ConfigError{"nodeName", fmt.Sprintf("%q is not a node name: use a non-empty name without '/'", req.Node)}
	}
	a := Allocation{Handle: req.Handle, Node: req.Node, NetNS: req.NetNS, AllowedSources: req.AllowedSources}
	for _, fam := range req.Families {
		ip, mac, err := allocateOne(tx, req, fam, a.MAC)
		if err != nil {
			return Allocation{}, err
		}
		a.IPs = append(a.IPs, ip)
		if mac != "" {
			a.MAC = mac
		}
	}
	return a, putAllocation(tx, a)
}

func putAllocation(tx store.Tx, a Allocation) error {
	raw, err := json.Marshal(a)
	if err != nil {
		return err
	}
	return tx.Put(a.Handle.key(), raw)
}

func allocateOne(tx store.Tx, req Request, fam Family, mac string) (IP, string, error) {
	own, err := nodeFamilyBlocks(tx, req.Node, fam)
	if err != nil {
		return IP{}, "", err
	}
	var tried []string
	for _, pool := range req.Pools {
		if pool.Family() != fam {
			continue
		}
		tried = append(tried, pool.CIDR.String())
		// Blocks this node already holds first, then a new claim.
		for _, b := range own {
			if b.Pool != pool.CIDR || !pool.CIDR.Contains(b.CIDR.Addr()) {
				continue
			}
			if ip, m, ok, err := take(tx, &b, pool, req, mac); ok || err != nil {
				return ip, m, err
			}
		}
		// Only a claim needs every claimed block, to stay clear of them.
		claimed, err := claimedBlocks(tx)
		if err != nil {
			return IP{}, "", err
		}
		b, ok, err := claimBlock(tx, pool, req.Node, claimed)
		if err != nil {
			return IP{}, "", err
		}
		if ok {
			if ip, m, ok, err := take(tx, &b, pool, req, mac); ok || err != nil {
				return ip, m, err
			}
		}
	}
	if len(tried) == 0 {
		return IP{}, "", fmt.Errorf("no %s pool is configured: add one to \"pools\", or set \"families\" to leave %s out", fam, fam)
	}
	return IP{}, "", fmt.Errorf("%w: no free %s address in %s on node %q and no block left to claim: add a pool to \"pools\" or use a larger prefix", ErrExhausted, fam, strings.Join(tried, ", "), req.Node)
}

// take hands out one address of b, writing b back; ok is false when b is full.
func take(tx store.Tx, b *Block, pool Pool, req Request, mac string) (IP, string, bool, error) {
	var addr netip.Addr
	switch pool.Assign {
	case MAC:
		var ok bool
		addr, mac, ok = macAddress(b, req.Rand, mac)
		if !ok {
			return IP{}, "", false, nil
		}
	default:
		var next uint64
		var ok bool
		if addr, next, ok = b.nextSequential(); !ok {
			return IP{}, "", false, nil
		}
		b.Next = next
		if pool.Assign != MAC {
			mac = ""
		}
	}
	b.Allocs[addr] = req.Handle.key()
	if err := putBlock(tx, *b); err != nil {
		return IP{}, "", false, err
	}
	ip := IP{Address: netip.PrefixFrom(addr, pool.CIDR.Bits()), Block: b.CIDR, Gateway: pool.Gateway()}
	return ip, mac, true, nil
}

// macAddress places a MAC in the last 48 bits of block b. It reuses mac
// when the interface already has one, else draws locally administered
// unicast MACs until one gives a free address.
func macAddress(b *Block, rand io.Reader, mac string) (netip.Addr, string, bool) {
	for try := 0; try < 16; try++ {
		hw, err := net.ParseMAC(mac)
		if mac == "" || err != nil {
			var r [6]byte
			if rand == nil {
				return netip.Addr{}, "", false
			}
			if _, err := io.ReadFull(rand, r[:]); err != nil {
				return netip.Addr{}, "", false
			}
			r[0] = r[0]&^0x01 | 0x02 // unicast, locally administered
			hw = net.HardwareAddr(r[:])
		}
		a16 := b.CIDR.Addr().As16()
		copy(a16[10:], hw)
		addr := netip.AddrFrom16(a16)
		if _, used := b.Allocs[addr]; !used && !reserved(b.Pool, addr) && b.CIDR.Contains(addr) {
			return addr, hw.String(), true
		}
		mac = "" // taken: draw a fresh one
	}
	return netip.Addr{}, "", false
}

// Release frees the addresses of h. Releasing a handle that holds nothing
// is not an error, so DEL can be repeated.
func Release(tx store.Tx, h Handle) (Allocation, bool, error) {
	a, ok, err := Get(tx, h)
	if err != nil || !ok {
		return a, false, err
	}
	for _, ip := range a.IPs {
		b, err := getBlock(tx, a.Node, ip.Block)
		if err != nil {
			return a, false, err
		}
		if b.Allocs[ip.Address.Addr()] == h.key() {
			delete(b.Allocs, ip.Address.Addr())
			if err := putBlock(tx, b); err != nil {
				return a, false, err
			}
		}
	}
	return a, true, tx.Delete(h.key())
}

// GC releases every allocation of network for which keep returns false,
// and returns what it freed.
func GC(tx store.Tx, network string, keep func(Allocation) bool) ([]Allocation, error) {
	all, err := List(tx, network)
	if err != nil {
		return nil, err
	}
	var freed []Allocation
	for _, a := range all {
		if keep(a) {
			continue
		}
		if _, _, err := Release(tx, a.Handle); err != nil {
			return freed, err
		}
		freed = append(freed, a)
	}
	return freed, nil
}

// Room reports, per family in fams, whether node can still get an address
// from pools, without changing anything.
func Room(tx store.Tx, node string, fams []Family, pools []Pool) error {
	blocks, err := Blocks(tx)
	if err != nil {
		return err
	}
	for _, fam := range fams {
		ok := false
		for _, pool := range pools {
			if pool.Family() != fam {
				continue
			}
			for _, b := range blocks {
				if b.Pool == pool.CIDR && b.Node == node && b.free() > 0 {
					ok = true
				}
			}
			if !ok {
				claimed := make([]netip.Prefix, 0, len(blocks))
				for _, b := range blocks {
					claimed = append(claimed, b.CIDR)
				}
				_, claimable, err := claimBlock(nopTx{tx}, pool, node, claimed)
				if err != nil {
					return err
				}
				ok = claimable
			}
			if ok {
				break
			}
		}
		if !ok {
			return fmt.Errorf("%w: no room for an %s address on node %q: add a pool to \"pools\" or use a larger prefix", ErrExhausted, fam, node)
		}
	}
	return nil
}

// nopTx drops writes, so Room can reuse claimBlock's search.
type nopTx struct{ store.Tx }

func (nopTx) Put(string, []byte) error { return nil }
func (nopTx) Delete(string) error      { return nil }
