package ipam

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"sort"
	"strings"

	"github.com/duetnet/duet/internal/store"
)

const blocksPrefix = "blocks/"

// claimsPrefix indexes every claimed block by CIDR alone ("claims/<cidr>"
// holds the node). A claim reads this index instead of every node's
// blocks: blocks are rewritten by every allocation, claims only when a
// block is claimed, so on etcd a claim no longer conflicts with (and
// retries behind) every allocation on every other node.
const claimsPrefix = "claims/"

// BlocksPrefix and ClaimsPrefix are where blocks and the claims index live
// in the store, for readers that watch it.
const (
	BlocksPrefix = blocksPrefix
	ClaimsPrefix = claimsPrefix
)

// Block is a slice of a pool with an affinity to one node. Its allocations
// live inside it, so handing out an address writes one block.
type Block struct {
	CIDR netip.Prefix `json:"cidr"`
	Pool netip.Prefix `json:"pool"`
	Node string       `json:"node"`
	// Allocs maps each address in use to the handle key that holds it.
	Allocs map[netip.Addr]string `json:"allocs"`
	// Next is the offset where sequential assignment resumes.
	Next uint64 `json:"next"`
}

// blockKey puts a block under its node, so an allocation reads only its
// own node's blocks: on etcd, allocations on different nodes then have
// disjoint read sets and never conflict; only claiming a new block reads
// every block.
func blockKey(node string, p netip.Prefix) string { return blocksPrefix + node + "/" + p.String() }

// Blocks lists every block in the store.
func Blocks(tx store.Tx) ([]Block, error) { return listBlocks(tx, blocksPrefix, nil) }

// nodeBlocks lists the blocks with an affinity to node.
func nodeBlocks(tx store.Tx, node string) ([]Block, error) {
	return listBlocks(tx, blocksPrefix+node+"/", nil)
}

// nodeFamilyBlocks lists node's blocks of fam. The family is read from
// each block's key, so the others are not decoded: a block holds a map
// of every address in use, and decoding it is most of an allocation's
// work in the store.
func nodeFamilyBlocks(tx store.Tx, node string, fam Family) ([]Block, error) {
	return listBlocks(tx, blocksPrefix+node+"/", func(cidr netip.Prefix) bool { return FamilyOf(cidr.Addr()) == fam })
}

// listBlocks decodes the blocks under prefix, all of them, or with keep
// those whose key names a CIDR it accepts (and any whose key names none).
func listBlocks(tx store.Tx, prefix string, keep func(netip.Prefix) bool) ([]Block, error) {
	kvs, err := tx.List(prefix)
	if err != nil {
		return nil, err
	}
	out := make([]Block, 0, len(kvs))
	for _, kv := range kvs {
		if keep != nil {
			if cidr, err := netip.ParsePrefix(strings.TrimPrefix(kv.Key, prefix)); err == nil && !keep(cidr) {
				continue
			}
		}
		var b Block
		if err := json.Unmarshal(kv.Value, &b); err != nil {
			return nil, fmt.Errorf("store key %s is corrupt: %w", kv.Key, err)
		}
		out = append(out, b)
	}
	return out, nil
}

// claimedBlocks returns every claimed block's CIDR from the claims index.
// A store written before the index existed has blocks but no claims: the
// first claim then reads every block and writes the index in the same
// transaction, so it is complete from then on.
func claimedBlocks(tx store.Tx) ([]netip.Prefix, error) {
	kvs, err := tx.List(claimsPrefix)
	if err != nil {
		return nil, err
	}
	out := make([]netip.Prefix, 0, len(kvs))
	for _, kv := range kvs {
		p, err := netip.ParsePrefix(strings.TrimPrefix(kv.Key, claimsPrefix))
		if err != nil {
			return nil, fmt.Errorf("store key %s is corrupt: %w", kv.Key, err)
		}
		out = append(out, p)
	}
	if len(out) > 0 {
		return out, nil
	}
	blocks, err := Blocks(tx)
	if err != nil {
		return nil, err
	}
	for _, b := range blocks {
		if err := tx.Put(claimsPrefix+b.CIDR.String(), []byte(b.Node)); err != nil {
			return nil, err
		}
		out = append(out, b.CIDR)
	}
	return out, nil
}

func getBlock(tx store.Tx, node string, p netip.Prefix) (Block, error) {
	raw, ok, err := tx.Get(blockKey(node, p))
	if err != nil {
		return Block{}, err
	}
	if !ok {
		return Block{}, fmt.Errorf("block %s is missing from the store", p)
	}
	var b Block
	if err := json.Unmarshal(raw, &b); err != nil {
		return Block{}, fmt.Errorf("store key %s is corrupt: %w", blockKey(node, p), err)
	}
	return b, nil
}

func putBlock(tx store.Tx, b Block) error {
	raw, err := json.Marshal(b)
	if err != nil {
		return err
	}
	return tx.Put(blockKey(b.Node, b.CIDR), raw)
}

// reserved says whether a is one of the pool's addresses no pod gets: the
// network address (the IPv6 subnet-router anycast), the gateway, and the
// IPv4 broadcast address.
func reserved(pool netip.Prefix, a netip.Addr) bool {
	if a == pool.Addr() || a == pool.Addr().Next() {
		return true
	}
	if a.Is4() {
		last := offset(pool.Addr(), size64(pool)-1)
		return a == last
	}
	return false
}

// free counts the addresses of b that can still be handed out, saturating.
func (b Block) free() uint64 {
	n := size64(b.CIDR) - uint64(len(b.Allocs))
	for _, a := range []netip.Addr{b.Pool.Addr(), b.Pool.Addr().Next()} {
		if b.CIDR.Contains(a) {
			n--
		}
	}
	if b.CIDR.Addr().Is4() {
		if last := offset(b.Pool.Addr(), size64(b.Pool)-1); b.CIDR.Contains(last) {
			n--
		}
	}
	return n
}

// nextSequential returns the first free address at or after b.Next,
// wrapping around the block.
func (b Block) nextSequential() (netip.Addr, uint64, bool) {
	size := size64(b.CIDR)
	if b.free() == 0 {
		return netip.Addr{}, 0, false
	}
	// At most len(Allocs)+4 steps: every step past a used or reserved
	// address, and there is a free one.
	for i := uint64(0); i <= uint64(len(b.Allocs))+4; i++ {
		off := (b.Next + i) % size
		a := offset(b.CIDR.Addr(), off)
		if _, used := b.Allocs[a]; used || reserved(b.Pool, a) {
			continue
		}
		return a, (off + 1) % size, true
	}
	return netip.Addr{}, 0, false
}

// claimBlock claims the first block of pool that overlaps no existing
// block (of any pool: a pool whose blockSize changed must not hand out an
// address twice) and gives it an affinity to node.
func claimBlock(tx store.Tx, pool Pool, node string, claimed []netip.Prefix) (Block, bool, error) {
	var taken []netip.Prefix
	for _, c := range claimed {
		if c.Overlaps(pool.CIDR) {
			taken = append(taken, c)
		}
	}
	sort.Slice(taken, func(i, j int) bool { return taken[i].Addr().Less(taken[j].Addr()) })
	step := u128{0, 1}.shl(hostBits(netip.PrefixFrom(pool.CIDR.Addr(), pool.BlockSize)))
	end := u128From(pool.CIDR.Addr()).add(step.shl(pool.BlockSize - pool.CIDR.Bits()))
	cur := u128From(pool.CIDR.Addr())
	start := cur
	// Every round either returns or steps past one taken block.
	for i := 0; i <= len(taken)+2 && cur.less(end); i++ {
		cand := netip.PrefixFrom(cur.addr(pool.CIDR.Addr()), pool.BlockSize)
		hit := -1
		for j, t := range taken {
			if t.Overlaps(cand) {
				hit = j
				break
			}
		}
		if hit < 0 {
			b := Block{CIDR: cand, Pool: pool.CIDR, Node: node, Allocs: map[netip.Addr]string{}}
			if b.free() == 0 {
				cur = cur.add(step)
				continue
			}
			if err := tx.Put(claimsPrefix+cand.String(), []byte(node)); err != nil {
				return Block{}, false, err
			}
			return b, true, putBlock(tx, b)
		}
		// Skip past the block in the way, whatever its size.
		t := taken[hit]
		past := u128From(t.Addr()).add(u128{0, 1}.shl(hostBits(t)))
		if hostBits(t) >= 128 {
			break
		}
		next := cur.add(step)
		if next.less(past) {
			next = alignUp(past, start, step)
		}
		cur = next
	}
	return Block{}, false, nil
}

// alignUp rounds v up to start + k*step.
func alignUp(v, start, step u128) u128 {
	// step is a power of two and start is aligned to it.
	mask := step.sub(u128{0, 1})
	if v.lo&mask.lo == 0 && v.hi&mask.hi == 0 {
		return v
	}
	return u128{v.hi &^ mask.hi, v.lo &^ mask.lo}.add(step)
}
