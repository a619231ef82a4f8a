package cni

import (
	"errors"
	"fmt"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/duetnet/duet/internal/config"
	"github.com/duetnet/duet/internal/ipam"
	"github.com/duetnet/duet/internal/kernel"
	"github.com/duetnet/duet/internal/podnet"
	"github.com/duetnet/duet/internal/store"
)

// duet's own CNI error codes (the spec leaves 100 and up to plugins).
const (
	// ErrPoolExhausted: no pool of a requested family has a free address.
	ErrPoolExhausted uint = 100
	// ErrInterfaceExists: CNI_IFNAME is already taken in the pod, or the
	// host end's name is taken on the host.
	ErrInterfaceExists uint = 101
	// ErrNoFirewall: protections are on but nftables cannot be used.
	ErrNoFirewall uint = 102
)

// cniError maps an error to a CNI error with the right code; msg says what
// was being done.
func cniError(msg string, err error) *types.Error {
	var ce *config.Error
	var ns *podnet.NetNSError
	var le *podnet.LinkExistsError
	var te *types.Error
	switch {
	case errors.As(err, &te):
		return te
	case errors.As(err, &ce):
		return types.NewError(types.ErrInvalidNetworkConfig, "invalid network configuration: "+ce.Error(), "")
	case errors.Is(err, store.ErrUnavailable):
		return types.NewError(types.ErrTryAgainLater, msg+": "+err.Error(), "")
	case errors.Is(err, kernel.ErrNoNFTables):
		return types.NewError(ErrNoFirewall, msg+": "+err.Error(), "")
	case errors.Is(err, ipam.ErrExhausted):
		return types.NewError(ErrPoolExhausted, msg+": "+err.Error(), "")
	case errors.As(err, &ns):
		return types.NewError(types.ErrInvalidEnvironmentVariables, fmt.Sprintf("%s: CNI_NETNS %q is not usable (%v): pass the path of an existing network namespace", msg, ns.Path, ns.Err), "")
	case errors.As(err, &le):
		if le.NetNS == "" {
			return types.NewError(ErrInterfaceExists, fmt.Sprintf("%s: the host already has an interface %s, the name of this attachment's host end: DEL the attachment that made it, or delete the interface", msg, le.Name), "")
		}
		return types.NewError(ErrInterfaceExists, fmt.Sprintf("%s: CNI_IFNAME %s already exists in %s: pick another CNI_IFNAME, or DEL the attachment that holds it", msg, le.Name, le.NetNS), "")
	}
	return types.NewError(types.ErrInternal, msg+": "+err.Error(), "")
}
