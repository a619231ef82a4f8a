package podnet

import (
	"errors"
	"fmt"

	"github.com/duetnet/duet/internal/kernel"
)

// Setup makes the kernel match Plan(spec): a veth pair, the bridge in
// bridge mode, sysctls, addresses, routes and neighbours, and returns what
// the CNI result needs. IPv6 is usable when it returns: nothing is left
// tentative.
//
// A retried ADD finds the same veth pair (each end the other's peer) and
// reconciles it. Any other interface under either name is a
// *LinkExistsError; a missing pod namespace is a *NetNSError. On failure
// Setup deletes the veth it created; it never deletes a bridge, which other
// pods may already share.
func Setup(spec Spec) (res Result, err error) {
	d, err := Plan(spec)
	if err != nil {
		return Result{}, err
	}
	host, err := kernel.HostNS()
	if err != nil {
		return Result{}, fmt.Errorf("podnet: %w", err)
	}
	defer host.Close()
	// The pod end's namespace: the pod's, or for a runtime that moves it
	// itself (RuntimeMoves), the runtime's, or this one.
	pod := host
	if d.NetNS != "" {
		if pod, err = openPod(d.NetNS); err != nil {
			return Result{}, err
		}
		defer pod.Close()
	}

	if d.Bridge != nil {
		if err := ensureBridge(host, *d.Bridge); err != nil {
			return Result{}, fmt.Errorf("podnet: bridge %s: %w", d.Bridge.Name, err)
		}
	}
	created, err := ensureVeth(host, pod, d)
	if err != nil {
		return Result{}, err
	}
	if created {
		defer func() {
			if err == nil {
				return
			}
			if rerr := host.DeleteLink(d.Host.Name); rerr != nil {
				err = errors.Join(err, fmt.Errorf("podnet: rollback: %w", rerr))
			}
		}()
	}
	hl, pl, err := reconcile(host, pod, d, created)
	if err != nil {
		return Result{}, fmt.Errorf("podnet: setup %s in netns %s: %w", d.Pod.Name, d.NetNS, err)
	}
	if err := testHookReconciled(); err != nil {
		return Result{}, err
	}
	return result(host, d, hl, pl)
}

// testHookReconciled lets a test fail Setup after everything is made, to
// prove the rollback.
var testHookReconciled = func() error { return nil }

// openPod opens the pod's namespace, mapping "not there" to *NetNSError.
func openPod(path string) (*kernel.NS, error) {
	pod, err := kernel.OpenNS(path)
	if errors.Is(err, kernel.ErrNoNetNS) {
		return nil, &NetNSError{Path: path, Err: err}
	}
	if err != nil {
		return nil, fmt.Errorf("podnet: %w", err)
	}
	return pod, nil
}

// ensureBridge makes the bridge exist and hold its gateway addresses,
// hardening it before the first address so none is ever tentative. An
// existing bridge keeps its addresses, MTU and MAC.
func ensureBridge(host *kernel.NS, b Iface) error {
	if _, err := host.EnsureBridge(b.Name, b.MTU); err != nil {
		return err
	}
	if _, err := host.SetSysctls(b.Sysctls); err != nil {
		return err
	}
	if err := ensureAddrs(host, b.Name, b.Addrs, false, false); err != nil {
		return err
	}
	return host.SetLinkUp(b.Name)
}

// ensureVeth creates the pair unless a previous attempt of the same ADD
// left it; created says whether this call made it. It creates first and
// looks only when a name is taken: a new pod's ADD, the common case,
// sends one request instead of three.
func ensureVeth(host, pod *kernel.NS, d Desired) (created bool, err error) {
	mac := d.Pod.MAC
	if mac == nil {
		// Chosen here rather than by the kernel so that nothing about the
		// link has to be read back before it is configured.
		mac = kernel.RandomMAC()
	}
	for try := 0; ; try++ {
		err = host.AddVeth(kernel.Veth{Name: d.Host.Name, MTU: d.Host.MTU, Group: d.Host.Group, PeerName: d.Pod.Name, PeerNS: pod, PeerMAC: mac})
		if err == nil {
			return true, nil
		}
		if !errors.Is(err, kernel.ErrExists) {
			return false, fmt.Errorf("podnet: %w", err)
		}
		done, err := existingVeth(host, pod, d)
		switch {
		case err != nil:
			return false, err
		case done:
			return false, nil
		case try == 1:
			return false, &LinkExistsError{Name: d.Host.Name}
		}
		// Neither name is taken any more (another creator's rollback
		// went between): create again, once.
	}
}

// existingVeth decides, after the kernel refused a pair because a name
// is taken (it made nothing), whether the pair is an earlier attempt's,
// to reuse (done), or someone else's link (an error).
func existingVeth(host, pod *kernel.NS, d Desired) (done bool, err error) {
	hl, herr := host.Link(d.Host.Name)
	pl, perr := pod.Link(d.Pod.Name)
	for _, err := range []error{herr, perr} {
		if err != nil && !errors.Is(err, kernel.ErrNotFound) {
			return false, fmt.Errorf("podnet: %w", err)
		}
	}
	switch {
	case herr == nil && perr == nil && isPair(hl, pl):
		if hl.Group != d.Host.Group { // left by an ADD of another duet version
			if err := host.SetLinkGroup(d.Host.Name, d.Host.Group); err != nil {
				return false, fmt.Errorf("podnet: %w", err)
			}
		}
		return true, nil
	case perr == nil:
		return false, &LinkExistsError{Name: d.Pod.Name, NetNS: d.NetNS}
	case herr == nil:
		return false, &LinkExistsError{Name: d.Host.Name}
	}
	return false, nil
}

// isPair reports whether h and p are the two ends of one veth. Each end's
// IFLA_LINK is its peer's ifindex in the peer's namespace.
func isPair(h, p kernel.Link) bool {
	return h.Kind == "veth" && p.Kind == "veth" && h.PeerIndex == p.Index && p.PeerIndex == h.Index
}

// result is the CNI result's part of the pair, from the links reconcile
// read (the MACs: the kernel chose the host end's), and the bridge's.
func result(host *kernel.NS, d Desired, hl, pl kernel.Link) (Result, error) {
	res := Result{
		HostIfName: hl.Name,
		HostMAC:    hl.MAC,
		PodIfName:  pl.Name,
		PodMAC:     pl.MAC,
		Gateways:   d.Gateways,
		Routes:     d.Routes,
	}
	if d.Bridge != nil {
		bl, err := host.Link(d.Bridge.Name)
		if err != nil {
			return Result{}, fmt.Errorf("podnet: %w", err)
		}
		res.BridgeName, res.BridgeMAC = bl.Name, bl.MAC
	}
	return res, nil
}
