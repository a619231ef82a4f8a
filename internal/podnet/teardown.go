package podnet

import (
	"errors"
	"fmt"

	"github.com/duetnet/duet/internal/kernel"
)

// Teardown removes the pod's veth pair (the CNI DEL) by deleting its host
// end, whose name is this attachment's own: the kernel deletes the pod end
// with it, and with them the host routes and pod neighbours; the bridge
// stays for the network's other pods. The pod side is never deleted by
// name: an interface called CNI_IFNAME without this host end is not
// duet's (a failed ADD that found eth0 taken must not have its DEL remove
// somebody else's eth0). It is idempotent: a missing namespace or
// interface is not an error, and the namespace is not even needed.
func Teardown(netns, ifName, hostIfName string) error {
	if hostIfName == "" {
		return nil
	}
	host, err := kernel.HostNS()
	if err != nil {
		return fmt.Errorf("podnet: teardown: %w", err)
	}
	defer host.Close()
	return deleteVeth(host, hostIfName)
}

func deleteVeth(n *kernel.NS, name string) error {
	l, err := n.Link(name)
	if errors.Is(err, kernel.ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("podnet: teardown: %w", err)
	}
	if l.Kind != "veth" {
		return nil
	}
	if err := n.DeleteLink(name); err != nil {
		return fmt.Errorf("podnet: teardown: %w", err)
	}
	return nil
}
