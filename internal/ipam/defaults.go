package ipam

import (
	"encoding/json"
	"fmt"
	"io"
	"net/netip"

	"github.com/duetnet/duet/internal/store"
)

const defaultPoolsKey = "pools/default"

// tenNet is where the zero-config IPv4 /16 comes from.
var tenNet = netip.MustParsePrefix("10.0.0.0/8")

// NewULA48 returns a random ULA /48 as RFC 4193 section 3.2 asks: fd00::/8
// followed by a 40-bit pseudo-random Global ID, so that two sites that
// never coordinated are unlikely to collide if they are ever joined.
func NewULA48(rand io.Reader) (netip.Prefix, error) {
	var b [16]byte
	b[0] = 0xfd
	if _, err := io.ReadFull(rand, b[1:6]); err != nil {
		return netip.Prefix{}, fmt.Errorf("reading random Global ID: %w", err)
	}
	return netip.PrefixFrom(netip.AddrFrom16(b), 48), nil
}

// FreeTen16 picks a /16 in 10.0.0.0/8 that overlaps none of taken (the
// host's routes and addresses), starting at a random one so that hosts
// set up alike do not all pick 10.0.0.0/16.
func FreeTen16(rand io.Reader, taken []netip.Prefix) (netip.Prefix, error) {
	var r [1]byte
	if _, err := io.ReadFull(rand, r[:]); err != nil {
		return netip.Prefix{}, fmt.Errorf("reading random start: %w", err)
	}
	for i := 0; i < 256; i++ {
		second := byte((int(r[0]) + i) % 256)
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, second, 0, 0}), 16)
		if !overlapsAny(p, taken) {
			return p, nil
		}
	}
	return netip.Prefix{}, fmt.Errorf("every /16 in %s overlaps a route or address on this host: configure an IPv4 pool in \"pools\"", tenNet)
}

func overlapsAny(p netip.Prefix, taken []netip.Prefix) bool {
	for _, t := range taken {
		if t.Bits() == 0 { // a default route overlaps everything and means nothing here
			continue
		}
		if t.Overlaps(p) {
			return true
		}
	}
	return false
}

// DefaultPools returns the zero-config pools, creating and storing them the
// first time: a random ULA /48 and a free 10.x/16. Once stored they never
// change, so every later ADD (and every node sharing the store) agrees.
func DefaultPools(tx store.Tx, rand io.Reader, hostPrefixes func() ([]netip.Prefix, error)) ([]Pool, error) {
	if pools, ok, err := StoredDefaultPools(tx); ok || err != nil {
		return pools, err
	}
	ula, err := NewULA48(rand)
	if err != nil {
		return nil, err
	}
	taken, err := hostPrefixes()
	if err != nil {
		return nil, fmt.Errorf("listing host routes to pick an IPv4 pool: %w", err)
	}
	ten, err := FreeTen16(rand, taken)
	if err != nil {
		return nil, err
	}
	var pools []Pool
	for _, c := range []netip.Prefix{ula, ten} {
		p, err := PoolSpec{CIDR: c.String()}.Resolve("pools")
		if err != nil {
			return nil, err
		}
		pools = append(pools, p)
	}
	raw, err := json.Marshal(pools)
	if err != nil {
		return nil, err
	}
	return pools, tx.Put(defaultPoolsKey, raw)
}

// StoredDefaultPools returns the zero-config pools if they were created.
func StoredDefaultPools(tx store.Tx) ([]Pool, bool, error) {
	raw, ok, err := tx.Get(defaultPoolsKey)
	if err != nil || !ok {
		return nil, false, err
	}
	var pools []Pool
	if err := json.Unmarshal(raw, &pools); err != nil {
		return nil, false, fmt.Errorf("store key %s is corrupt: %w", defaultPoolsKey, err)
	}
	return pools, true, nil
}

// RecordPools stores the pools a network was configured with, so that
// `duetctl ipam show` can list them; it writes only when they changed.
func RecordPools(tx store.Tx, network string, pools []Pool) error {
	raw, err := json.Marshal(pools)
	if err != nil {
		return err
	}
	key := "pools/networks/" + network
	old, ok, err := tx.Get(key)
	if err != nil || (ok && string(old) == string(raw)) {
		return err
	}
	return tx.Put(key, raw)
}

// AllPools lists the zero-config pools ("default") and every network's
// recorded pools, by network name.
func AllPools(tx store.Tx) (map[string][]Pool, error) {
	out := map[string][]Pool{}
	if p, ok, err := StoredDefaultPools(tx); err != nil {
		return nil, err
	} else if ok {
		out["(zero-config default)"] = p
	}
	kvs, err := tx.List("pools/networks/")
	if err != nil {
		return nil, err
	}
	for _, kv := range kvs {
		var p []Pool
		if err := json.Unmarshal(kv.Value, &p); err != nil {
			return nil, fmt.Errorf("store key %s is corrupt: %w", kv.Key, err)
		}
		out[kv.Key[len("pools/networks/"):]] = p
	}
	return out, nil
}
