package ipam

import (
	"net/netip"

	"github.com/duetnet/duet/internal/store"
)

// ReleaseNode frees what node holds, for a node that is gone for good:
// its allocations first, then its blocks (with their claims), so the
// addresses and blocks can be handed out again. It removes at most limit
// keys per call, because an etcd transaction has a bounded size; callers
// run it in one transaction after another until it reports 0, and an
// interrupted removal can simply be run again.
func ReleaseNode(tx store.Tx, node string, limit int) (released int, err error) {
	allocs, err := List(tx, "")
	if err != nil {
		return 0, err
	}
	for _, a := range allocs {
		if a.Node != node {
			continue
		}
		if released >= limit {
			return released, nil
		}
		// The blocks go next anyway: drop the handle, not each address.
		if err := tx.Delete(a.Handle.key()); err != nil {
			return released, err
		}
		released++
	}
	if released > 0 {
		return released, nil
	}
	blocks, err := nodeBlocks(tx, node)
	if err != nil {
		return 0, err
	}
	for _, b := range blocks {
		if released+2 > limit {
			break
		}
		if err := dropBlock(tx, node, b.CIDR); err != nil {
			return released, err
		}
		released += 2
	}
	return released, nil
}

// dropBlock deletes node's block cidr and its claim, so the prefix can be
// claimed again.
func dropBlock(tx store.Tx, node string, cidr netip.Prefix) error {
	if err := tx.Delete(blockKey(node, cidr)); err != nil {
		return err
	}
	return tx.Delete(claimsPrefix + cidr.String())
}
