package docker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"

	"github.com/duetnet/duet/internal/ipam"
	"github.com/duetnet/duet/internal/store"
)

// Store keys of the driver's state, beside IPAM's own.
const (
	poolsPrefix     = "docker/pools/"
	networksPrefix  = "docker/networks/"
	endpointsPrefix = "docker/endpoints/"
	// addrNetwork is the IPAM network name of every address the IPAM
	// driver hands out: Docker asks for addresses by pool, not by
	// container.
	addrNetwork = "docker"
)

// poolRecord is a pool Docker asked for, shared by every network (on
// every node) that asked for the same prefix: Refs counts them per node,
// so the pool is forgotten when the last network of the last node goes.
type poolRecord struct {
	Pool ipam.Pool      `json:"pool"`
	Refs map[string]int `json:"refs"`
	// Default says the pool is duet's zero-config one, which outlives
	// every network.
	Default bool `json:"default,omitempty"`
}

func getJSON(tx store.Tx, key string, v any) (bool, error) {
	raw, ok, err := tx.Get(key)
	if err != nil || !ok {
		return ok, err
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return false, fmt.Errorf("store key %s is corrupt: %w", key, err)
	}
	return true, nil
}

func putJSON(tx store.Tx, key string, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return tx.Put(key, raw)
}

func (d *Driver) update(fn func(store.Tx) error) error {
	s, err := d.OpenStore()
	if err != nil {
		return err
	}
	defer s.Close()
	return s.Update(context.Background(), fn)
}

func (d *Driver) view(fn func(store.Tx) error) error {
	s, err := d.OpenStore()
	if err != nil {
		return err
	}
	defer s.Close()
	return s.View(context.Background(), fn)
}

// requestPool answers IpamDriver.RequestPool: the zero-config pool of the
// family when Docker names no subnet, else the user's --subnet, checked
// against every pool duet knows.
func (d *Driver) requestPool(req requestPoolRequest) (requestPoolResponse, error) {
	if req.SubPool != "" {
		return requestPoolResponse{}, fmt.Errorf("--ip-range %s: duet's IPAM hands out addresses from per-node blocks of the whole subnet, so it cannot keep to a range; leave --ip-range out, or give the range as its own --subnet", req.SubPool)
	}
	fam := ipam.IPv4
	if req.V6 {
		fam = ipam.IPv6
	}
	var rec poolRecord
	err := d.update(func(tx store.Tx) error {
		var err error
		if req.Pool == "" {
			rec, err = d.defaultPool(tx, fam, req.Options)
		} else {
			rec, err = d.userPool(tx, req.Pool, fam, req.Options)
		}
		if err != nil {
			return err
		}
		if rec.Refs == nil {
			rec.Refs = map[string]int{}
		}
		rec.Refs[d.Node]++
		if !rec.Default {
			if err := ipam.RecordPools(tx, "docker:"+rec.Pool.CIDR.String(), []ipam.Pool{rec.Pool}); err != nil {
				return err
			}
		}
		return putJSON(tx, poolsPrefix+poolKey(rec.Pool.CIDR), rec)
	})
	if err != nil {
		return requestPoolResponse{}, err
	}
	p := rec.Pool
	d.Log.Info("docker: pool requested", "pool", p.CIDR, "refs", rec.Refs[d.Node])
	return requestPoolResponse{
		PoolID: p.CIDR.String(),
		Pool:   p.CIDR.String(),
		// The gateway is the pool's reserved first address: Docker then
		// asks for no gateway address, and IPAM never hands it out.
		Data: map[string]string{dataGateway: netip.PrefixFrom(p.Gateway(), p.CIDR.Bits()).String()},
	}, nil
}

// poolKey is a prefix as a store key segment ('/' would split it).
func poolKey(p netip.Prefix) string { return strings.ReplaceAll(p.String(), "/", "_") }

func (d *Driver) defaultPool(tx store.Tx, fam ipam.Family, opts map[string]string) (poolRecord, error) {
	for k := range opts {
		if strings.HasPrefix(k, "duet.") {
			return poolRecord{}, fmt.Errorf("--ipam-opt %s applies to a --subnet you give: duet's zero-config pools are shared by every network, so give a --subnet to set it", k)
		}
	}
	pools, err := ipam.DefaultPools(tx, d.Rand, d.Kernel.HostPrefixes)
	if err != nil {
		return poolRecord{}, err
	}
	for _, p := range pools {
		if p.Family() != fam {
			continue
		}
		var rec poolRecord
		if _, err := getJSON(tx, poolsPrefix+poolKey(p.CIDR), &rec); err != nil {
			return poolRecord{}, err
		}
		rec.Pool, rec.Default = p, true
		return rec, nil
	}
	return poolRecord{}, fmt.Errorf("duet's zero-config pools have no %s pool: give a --subnet", fam)
}

func (d *Driver) userPool(tx store.Tx, subnet string, fam ipam.Family, opts map[string]string) (poolRecord, error) {
	cidr, err := netip.ParsePrefix(subnet)
	if err != nil {
		return poolRecord{}, fmt.Errorf("--subnet %q is not a prefix: write it like fd00:1::/64 or 10.1.0.0/24", subnet)
	}
	if cidr.Addr().Is4() != (fam == ipam.IPv4) {
		return poolRecord{}, fmt.Errorf("--subnet %s is not an %s prefix", cidr, fam)
	}
	if host := cidr.Addr().BitLen() - cidr.Bits(); host < 2 {
		min := "/126"
		if cidr.Addr().Is4() {
			min = "/30"
		}
		return poolRecord{}, fmt.Errorf("--subnet %s holds %d addresses, fewer than duet can serve (network, gateway and at least two containers): use %s or larger", cidr, 1<<host, min)
	}
	spec := ipam.PoolSpec{CIDR: cidr.String()}
	famBlock := IPAMBlockSize + "4"
	if fam == ipam.IPv6 {
		famBlock = IPAMBlockSize + "6"
	}
	for k, v := range opts {
		switch k {
		case IPAMBlockSize + "4", IPAMBlockSize + "6":
			if k != famBlock {
				continue // the other family's
			}
			fallthrough
		case IPAMBlockSize:
			n, err := strconv.Atoi(v)
			if err != nil {
				return poolRecord{}, fmt.Errorf("--ipam-opt %s=%q is not a prefix length: write it like %s=%d", k, v, k, ipam.DefaultBlockSize6)
			}
			spec.BlockSize = &n
		case IPAMNATOutgoing:
			b, err := strconv.ParseBool(v)
			if err != nil {
				return poolRecord{}, fmt.Errorf("--ipam-opt %s=%q: write true or false", k, v)
			}
			spec.NATOutgoing = &b
		default:
			if strings.HasPrefix(k, "duet.") {
				return poolRecord{}, fmt.Errorf("--ipam-opt %s is not one of duet's: use %s (or %s4, %s6 for one family) or %s", k, IPAMBlockSize, IPAMBlockSize, IPAMBlockSize, IPAMNATOutgoing)
			}
		}
	}
	p, err := spec.Resolve("--subnet " + cidr.String())
	if err != nil {
		return poolRecord{}, err
	}
	if err := d.Kernel.CheckPools([]netip.Prefix{p.CIDR}); err != nil {
		return poolRecord{}, fmt.Errorf("--subnet %s: %w", p.CIDR, err)
	}
	var rec poolRecord
	found, err := getJSON(tx, poolsPrefix+poolKey(p.CIDR), &rec)
	if err != nil {
		return poolRecord{}, err
	}
	if found {
		if rec.Pool.BlockSize != p.BlockSize || rec.Pool.NATOutgoing != p.NATOutgoing {
			return poolRecord{}, fmt.Errorf("--subnet %s is in use with block size /%d and NAT %v: ask for it with the same --ipam-opt, or pick another subnet", p.CIDR, rec.Pool.BlockSize, rec.Pool.NATOutgoing)
		}
		return rec, nil
	}
	// Every pool duet knows: the zero-config ones, the CNI networks' and
	// Docker's. The same prefix is shared; an overlapping one is refused,
	// since one address would then belong to two pools.
	all, err := ipam.AllPools(tx)
	if err != nil {
		return poolRecord{}, err
	}
	names := make([]string, 0, len(all))
	for n := range all {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		for _, q := range all[n] {
			if q.CIDR == p.CIDR {
				rec := poolRecord{Pool: q, Default: strings.HasPrefix(n, "(zero-config")}
				return rec, nil
			}
			if q.CIDR.Overlaps(p.CIDR) {
				return poolRecord{}, fmt.Errorf("--subnet %s overlaps %s, which %s uses: pick a subnet outside it (duetctl ipam show lists them)", p.CIDR, q.CIDR, poolUser(n))
			}
		}
	}
	return poolRecord{Pool: p}, nil
}

func poolUser(network string) string {
	switch {
	case strings.HasPrefix(network, "(zero-config"):
		return "duet's zero-config pool"
	case strings.HasPrefix(network, "docker:"):
		return "another Docker network"
	}
	return "CNI network " + strconv.Quote(network)
}

// releasePool answers IpamDriver.ReleasePool: one reference fewer; this
// node's empty blocks of the pool go with its last reference, and the
// pool with the last reference anywhere.
func (d *Driver) releasePool(req releasePoolRequest) error {
	cidr, err := netip.ParsePrefix(req.PoolID)
	if err != nil {
		return fmt.Errorf("pool ID %q is not one of duet's", req.PoolID)
	}
	return d.update(func(tx store.Tx) error {
		var rec poolRecord
		found, err := getJSON(tx, poolsPrefix+poolKey(cidr), &rec)
		if err != nil || !found {
			return err
		}
		if rec.Refs[d.Node] > 1 {
			rec.Refs[d.Node]--
			return putJSON(tx, poolsPrefix+poolKey(cidr), rec)
		}
		delete(rec.Refs, d.Node)
		// No network of this node uses the pool any more, so no address
		// of it here is live: free those Docker never released (it
		// keeps one family's address when the other's request fails).
		leaked, err := ipam.GC(tx, addrNetwork, func(a ipam.Allocation) bool {
			return a.Node != d.Node || len(a.IPs) == 0 || !cidr.Contains(a.IPs[0].Address.Addr())
		})
		if err != nil {
			return err
		}
		for _, a := range leaked {
			d.Log.Info("docker: freed an address Docker did not release", "address", a.IPs[0].Address.Addr(), "pool", cidr)
		}
		if _, err := ipam.ReleaseEmptyBlocks(tx, d.Node, cidr); err != nil {
			return err
		}
		if len(rec.Refs) > 0 || rec.Default {
			return putJSON(tx, poolsPrefix+poolKey(cidr), rec)
		}
		if err := tx.Delete("pools/networks/docker:" + cidr.String()); err != nil {
			return err
		}
		return tx.Delete(poolsPrefix + poolKey(cidr))
	})
}

func (d *Driver) pool(tx store.Tx, poolID string) (ipam.Pool, error) {
	cidr, err := netip.ParsePrefix(poolID)
	if err != nil {
		return ipam.Pool{}, fmt.Errorf("pool ID %q is not one of duet's", poolID)
	}
	var rec poolRecord
	found, err := getJSON(tx, poolsPrefix+poolKey(cidr), &rec)
	if err != nil {
		return ipam.Pool{}, err
	}
	if !found {
		return ipam.Pool{}, fmt.Errorf("%w: pool %s is not known to duet (was it released?): recreate the network", errUnknownPool, cidr)
	}
	return rec.Pool, nil
}

// requestAddress answers IpamDriver.RequestAddress: the gateway is the
// pool's reserved first address; any other address is an allocation of
// its own, from this node's blocks.
func (d *Driver) requestAddress(req requestAddressRequest) (requestAddressResponse, error) {
	var out netip.Prefix
	err := d.update(func(tx store.Tx) error {
		p, err := d.pool(tx, req.PoolID)
		if err != nil {
			return err
		}
		if req.Options[optAddressType] == addressTypeGW {
			if req.Address != "" && req.Address != p.Gateway().String() {
				return fmt.Errorf("--gateway %s: duet's gateway in %s is %s (the pool's first address, which it never hands to a container): leave --gateway out", req.Address, p.CIDR, p.Gateway())
			}
			out = netip.PrefixFrom(p.Gateway(), p.CIDR.Bits())
			return nil
		}
		h := ipam.Handle{Network: addrNetwork, ContainerID: randomID(), IfName: strings.ToLower(p.Family().String())}
		r := ipam.Request{Handle: h, Node: d.Node, Families: []ipam.Family{p.Family()}, Pools: []ipam.Pool{p}, Rand: d.Rand}
		var a ipam.Allocation
		if req.Address != "" {
			addr, perr := netip.ParseAddr(req.Address)
			if perr != nil {
				return fmt.Errorf("--ip %q is not an address", req.Address)
			}
			a, err = ipam.AllocateAddr(tx, r, p, addr)
		} else {
			a, err = ipam.Allocate(tx, r)
		}
		if err != nil {
			return err
		}
		// A host route's length, not the pool's: the container then
		// sends everything to its gateway, which is the host's end of
		// its interface (routed) or the bridge. With the pool's length
		// it would look for its neighbours on its own link, where in
		// routed mode nobody answers for them.
		out = netip.PrefixFrom(a.IPs[0].Address.Addr(), a.IPs[0].Address.Addr().BitLen())
		return nil
	})
	if err != nil {
		return requestAddressResponse{}, err
	}
	return requestAddressResponse{Address: out.String()}, nil
}

func (d *Driver) releaseAddress(req releaseAddressRequest) error {
	addr, err := netip.ParseAddr(req.Address)
	if err != nil {
		if pf, perr := netip.ParsePrefix(req.Address); perr == nil {
			addr = pf.Addr()
		} else {
			return fmt.Errorf("address %q is not an address", req.Address)
		}
	}
	return d.update(func(tx store.Tx) error {
		p, err := d.pool(tx, req.PoolID)
		if errors.Is(err, errUnknownPool) {
			return nil // released with its pool already
		}
		if err != nil {
			return err
		}
		if addr == p.Gateway() {
			return nil
		}
		_, _, err = ipam.ReleaseAddr(tx, p, addr)
		return err
	})
}

var errUnknownPool = errors.New("unknown pool")

func randomID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
