package podnet

import (
	"errors"
	"fmt"

	"github.com/duetnet/duet/internal/kernel"
)

// Teardown removes the pod's veth pair (the CNI DEL). Deleting either end
// deletes both, and with them the host routes and pod neighbours; the
// bridge stays for the network's other pods. It is idempotent: a missing
// namespace or interface is not an error. When the namespace is gone only
// the host end is looked for. An interface under either name that is not a
// veth is not duet's, and is left alone. Empty names are skipped.
func Teardown(netns, ifName, hostIfName string) error {
	if netns != "" && ifName != "" {
		pod, err := kernel.OpenNS(netns)
		switch {
		case errors.Is(err, kernel.ErrNoNetNS):
		case err != nil:
			return fmt.Errorf("podnet: teardown: %w", err)
		default:
			err := deleteVeth(pod, ifName)
			pod.Close()
			if err != nil {
				return err
			}
		}
	}
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
