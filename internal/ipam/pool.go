// Package ipam allocates pod addresses of both families from pools, through
// per-node blocks, over the transactional store in internal/store.
//
// It is pure: no kernel, no files. Every function takes a store.Tx, so one
// CNI ADD is one transaction: either the allocation, its block claim and its
// handle record all commit, or none of them does. That is what makes a
// plugin killed mid-ADD unable to leave a duplicate.
//
// Layout in the store:
//
//	pools/default                      the zero-config pools, created once
//	pools/networks/<network>           the pools a network was last given (for ipam show)
//	blocks/<node>/<block cidr>         a Block: pool, node affinity, allocations
//	claims/<block cidr>                which node claimed a block (the claim index)
//	handles/<network>/<container>/<if> an Allocation, keyed for idempotent ADD
package ipam

import (
	"fmt"
	"net/netip"
)

// Assign is how an address is picked inside a block.
type Assign string

const (
	// Sequential walks the block round-robin from the last address handed
	// out, like host-local, so a freed address is not reused at once.
	Sequential Assign = "sequential"
	// MAC puts the interface's MAC address in the last 48 bits, as classic
	// Docker did; it needs IPv6 blocks of /80 or larger.
	MAC Assign = "mac"
)

// Family is an address family, used to ask for addresses; everything else
// reads the family off the address itself.
type Family int

const (
	IPv6 Family = 6
	IPv4 Family = 4
)

func (f Family) String() string { return fmt.Sprintf("IPv%d", int(f)) }

// FamilyOf returns the family of a.
func FamilyOf(a netip.Addr) Family {
	if a.Is4() {
		return IPv4
	}
	return IPv6
}

// Default block sizes, as in Calico: 64 addresses a block in both families.
const (
	DefaultBlockSize4 = 26
	DefaultBlockSize6 = 122
	// macBits is the host part that Assign MAC fills.
	macBits = 48
)

// sharedAddressSpace is 100.64.0.0/10 (RFC 6598, carrier-grade NAT).
var sharedAddressSpace = netip.MustParsePrefix("100.64.0.0/10")

// ULA is fc00::/7 (RFC 4193); pools inside it are masqueraded by default.
var ULA = netip.MustParsePrefix("fc00::/7")

// Pool is a prefix of one family that blocks are carved from.
type Pool struct {
	CIDR        netip.Prefix `json:"cidr"`
	BlockSize   int          `json:"blockSize"`
	NATOutgoing bool         `json:"natOutgoing"`
	Assign      Assign       `json:"assign"`
}

// Family returns the pool's address family.
func (p Pool) Family() Family { return FamilyOf(p.CIDR.Addr()) }

// Gateway is the pool's first host address. It is never handed to a pod:
// bridge mode puts it on the bridge, and duet-ipam reports it as gateway.
func (p Pool) Gateway() netip.Addr { return p.CIDR.Addr().Next() }

// DefaultNATOutgoing says whether traffic from prefix to the outside is
// masqueraded when the pool does not say: yes for private IPv4 and ULA IPv6
// (they are not routable on the internet), no for global IPv6.
func DefaultNATOutgoing(p netip.Prefix) bool {
	if p.Addr().Is4() {
		return p.Addr().IsPrivate() || sharedAddressSpace.Overlaps(p) || !p.Addr().IsGlobalUnicast()
	}
	return ULA.Overlaps(p) || !p.Addr().IsGlobalUnicast()
}

// PoolSpec is a pool as written in configuration: unset fields take
// defaults in Resolve.
type PoolSpec struct {
	CIDR        string `json:"cidr"`
	BlockSize   *int   `json:"blockSize,omitempty"`
	NATOutgoing *bool  `json:"natOutgoing,omitempty"`
	Assign      Assign `json:"assign,omitempty"`
}

// ConfigError is a configuration error naming the field at fault and the fix.
type ConfigError struct {
	Field string
	Msg   string
}

func (e *ConfigError) Error() string { return e.Field + ": " + e.Msg }

// Resolve validates s and fills in defaults; field names the pool in
// errors, e.g. "pools[1]".
func (s PoolSpec) Resolve(field string) (Pool, error) {
	cidr, err := netip.ParsePrefix(s.CIDR)
	if err != nil {
		return Pool{}, &ConfigError{field + ".cidr", fmt.Sprintf("%q is not a prefix: write it like \"fd00:1::/48\" or \"10.1.0.0/16\"", s.CIDR)}
	}
	if cidr.Addr().Is4In6() {
		return Pool{}, &ConfigError{field + ".cidr", fmt.Sprintf("%s is an IPv4-mapped IPv6 prefix: write the IPv4 prefix itself", cidr)}
	}
	if m := cidr.Masked(); m != cidr {
		return Pool{}, &ConfigError{field + ".cidr", fmt.Sprintf("%s has host bits set: use %s", cidr, m)}
	}
	if cidr.Bits() == 0 {
		return Pool{}, &ConfigError{field + ".cidr", fmt.Sprintf("%s covers the whole address family: use a private or assigned prefix such as fd00:1::/48 or 10.1.0.0/16", cidr)}
	}
	p := Pool{CIDR: cidr, Assign: s.Assign}
	if p.Assign == "" {
		p.Assign = Sequential
	}
	if p.Assign != Sequential && p.Assign != MAC {
		return Pool{}, &ConfigError{field + ".assign", fmt.Sprintf("%q is not an assignment mode: use \"sequential\" or \"mac\"", s.Assign)}
	}
	is4 := cidr.Addr().Is4()
	switch {
	case s.BlockSize != nil:
		p.BlockSize = *s.BlockSize
	case p.Assign == MAC:
		p.BlockSize = max(cidr.Bits(), 128-macBits)
	case is4:
		p.BlockSize = max(cidr.Bits(), DefaultBlockSize4)
	default:
		p.BlockSize = max(cidr.Bits(), DefaultBlockSize6)
	}
	if s.NATOutgoing != nil {
		p.NATOutgoing = *s.NATOutgoing
	} else {
		p.NATOutgoing = DefaultNATOutgoing(cidr)
	}
	return p, p.Validate(field)
}

// Validate checks a resolved pool; field names it in errors.
func (p Pool) Validate(field string) error {
	bits, bl := p.CIDR.Bits(), p.CIDR.Addr().BitLen()
	if p.Assign == MAC {
		if p.CIDR.Addr().Is4() {
			return &ConfigError{field + ".assign", fmt.Sprintf("\"mac\" needs an IPv6 pool, and %s is IPv4: use \"sequential\"", p.CIDR)}
		}
		if bits > 128-macBits {
			return &ConfigError{field + ".cidr", fmt.Sprintf("%s is too small for assign \"mac\": the MAC fills the last 48 bits, so the pool must be /80 or larger (for example %s): use a shorter prefix, or assign \"sequential\"", p.CIDR, netip.PrefixFrom(p.CIDR.Addr(), 80).Masked())}
		}
		if p.BlockSize > 128-macBits {
			return &ConfigError{field + ".blockSize", fmt.Sprintf("/%d blocks are too small for assign \"mac\": blocks must be /80 or larger, so set blockSize to 80 or less", p.BlockSize)}
		}
	}
	minHost := 2 // at least 4 addresses a block
	if p.Assign != MAC && bl == 128 && p.BlockSize < 64 {
		return &ConfigError{field + ".blockSize", fmt.Sprintf("/%d blocks are larger than a node can walk: use 64 or more (122 is the default)", p.BlockSize)}
	}
	if p.BlockSize > bl-minHost {
		return &ConfigError{field + ".blockSize", fmt.Sprintf("/%d leaves fewer than 4 addresses a block: use at most %d", p.BlockSize, bl-minHost)}
	}
	if p.BlockSize < bits {
		return &ConfigError{field + ".cidr", fmt.Sprintf("%s is smaller than its block size /%d: use a prefix of /%d or shorter, or set %s.blockSize to %d or more", p.CIDR, p.BlockSize, p.BlockSize, field, bits)}
	}
	return nil
}

// ValidatePools checks that no two pools overlap; fields name them.
func ValidatePools(pools []Pool, field string) error {
	for i := range pools {
		for j := i + 1; j < len(pools); j++ {
			if pools[i].CIDR.Overlaps(pools[j].CIDR) {
				return &ConfigError{fmt.Sprintf("%s[%d].cidr", field, j), fmt.Sprintf("%s overlaps %s[%d] (%s): pools must be disjoint, so remove one or pick a prefix outside the other", pools[j].CIDR, field, i, pools[i].CIDR)}
			}
		}
	}
	return nil
}
