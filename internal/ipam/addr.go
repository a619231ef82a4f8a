package ipam

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"

	"github.com/duetnet/duet/internal/store"
)

// Runtimes that ask for addresses one at a time (Docker's IPAM driver
// protocol: RequestAddress and ReleaseAddress name a pool and an address,
// never a container) use the functions here; each address is an
// allocation of its own, so the rest of IPAM (GC, duetctl ipam show,
// ReleaseNode) sees them like any other.

// AllocateAddr gives req.Handle the address addr of pool, for a runtime
// that lets the user choose it (docker run --ip). The address must lie in
// a block of req.Node, or in a block nobody has claimed yet, which this
// node then claims; an address in another node's block is refused, since
// only that node routes it.
func AllocateAddr(tx store.Tx, req Request, pool Pool, addr netip.Addr) (Allocation, error) {
	if a, ok, err := Get(tx, req.Handle); err != nil || ok {
		return a, err
	}
	if !pool.CIDR.Contains(addr) {
		return Allocation{}, &ConfigError{"address", fmt.Sprintf("%s is not in pool %s: pick an address inside it", addr, pool.CIDR)}
	}
	if reserved(pool.CIDR, addr) {
		return Allocation{}, &ConfigError{"address", fmt.Sprintf("%s is reserved in pool %s (network, gateway or broadcast address): pick another", addr, pool.CIDR)}
	}
	cidr := netip.PrefixFrom(addr, pool.BlockSize).Masked()
	owner, claimed, err := tx.Get(claimsPrefix + cidr.String())
	if err != nil {
		return Allocation{}, err
	}
	var b Block
	switch {
	case claimed && string(owner) != req.Node:
		return Allocation{}, &ConfigError{"address", fmt.Sprintf("%s is in block %s, which node %q holds: only that node routes it, so pick an address of this node's blocks (duetctl ipam show) or leave the address out", addr, cidr, owner)}
	case claimed:
		if b, err = getBlock(tx, req.Node, cidr); err != nil {
			return Allocation{}, err
		}
	default:
		all, err := claimedBlocks(tx)
		if err != nil {
			return Allocation{}, err
		}
		for _, c := range all {
			if c.Overlaps(cidr) {
				return Allocation{}, &ConfigError{"address", fmt.Sprintf("%s is in block %s, claimed with another block size: pick another address", addr, c)}
			}
		}
		b = Block{CIDR: cidr, Pool: pool.CIDR, Node: req.Node, Allocs: map[netip.Addr]string{}}
		if err := tx.Put(claimsPrefix+cidr.String(), []byte(req.Node)); err != nil {
			return Allocation{}, err
		}
	}
	if h, used := b.Allocs[addr]; used {
		return Allocation{}, &ConfigError{"address", fmt.Sprintf("%s is already in use (%s): pick another, or leave the address out", addr, strings.TrimPrefix(h, handlesPrefix))}
	}
	b.Allocs[addr] = req.Handle.key()
	if err := putBlock(tx, b); err != nil {
		return Allocation{}, err
	}
	a := Allocation{Handle: req.Handle, Node: req.Node, NetNS: req.NetNS,
		IPs: []IP{{Address: netip.PrefixFrom(addr, pool.CIDR.Bits()), Block: cidr, Gateway: pool.Gateway()}}}
	return a, putAllocation(tx, a)
}

// ReleaseAddr frees the allocation that holds addr in pool, whichever node
// holds its block, and says what it was. An address nobody holds is not an
// error (a release can be repeated).
func ReleaseAddr(tx store.Tx, pool Pool, addr netip.Addr) (Allocation, bool, error) {
	if !pool.CIDR.Contains(addr) {
		return Allocation{}, false, nil
	}
	cidr := netip.PrefixFrom(addr, pool.BlockSize).Masked()
	owner, ok, err := tx.Get(claimsPrefix + cidr.String())
	if err != nil || !ok {
		return Allocation{}, false, err
	}
	b, err := getBlock(tx, string(owner), cidr)
	if err != nil {
		return Allocation{}, false, err
	}
	key, ok := b.Allocs[addr]
	if !ok {
		return Allocation{}, false, nil
	}
	raw, found, err := tx.Get(key)
	if err != nil {
		return Allocation{}, false, err
	}
	if !found { // a block entry without its handle: free the address alone
		delete(b.Allocs, addr)
		return Allocation{}, true, putBlock(tx, b)
	}
	var a Allocation
	if err := json.Unmarshal(raw, &a); err != nil {
		return Allocation{}, false, fmt.Errorf("store key %s is corrupt: %w", key, err)
	}
	return Release(tx, a.Handle)
}

// ReleaseEmptyBlocks drops node's blocks of pool that hold no address, with
// their claims, and says how many it dropped: a runtime whose last network
// on the pool is gone gives the pool's space back.
func ReleaseEmptyBlocks(tx store.Tx, node string, pool netip.Prefix) (int, error) {
	blocks, err := nodeBlocks(tx, node)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, b := range blocks {
		if b.Pool != pool || len(b.Allocs) > 0 {
			continue
		}
		if err := dropBlock(tx, node, b.CIDR); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

// ReleaseBlockIfEmpty drops node's block cidr, with its claim, when it
// holds no address, and says whether it did. Read in the same
// transaction as the caller's decision, so an allocation that lands in
// the block meanwhile makes the transaction retry (etcd) or wait (bolt),
// never lose its address.
func ReleaseBlockIfEmpty(tx store.Tx, node string, cidr netip.Prefix) (bool, error) {
	raw, ok, err := tx.Get(blockKey(node, cidr))
	if err != nil || !ok {
		return false, err
	}
	var b Block
	if err := json.Unmarshal(raw, &b); err != nil {
		return false, fmt.Errorf("store key %s is corrupt: %w", blockKey(node, cidr), err)
	}
	if len(b.Allocs) > 0 {
		return false, nil
	}
	return true, dropBlock(tx, node, cidr)
}
