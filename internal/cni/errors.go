package cni

import (
	"errors"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/duetnet/duet/internal/config"
	"github.com/duetnet/duet/internal/ipam"
	"github.com/duetnet/duet/internal/store"
)

// duet's own CNI error codes (the spec leaves 100 and up to plugins).
const (
	// ErrPoolExhausted: no pool of a requested family has a free address.
	ErrPoolExhausted uint = 100
	// ErrInterfaceExists: CNI_IFNAME is already taken in the pod, or the
	// host end's name is taken on the host.
	ErrInterfaceExists uint = 101
)

// NetNSError marks a missing or invalid network namespace; Kernel
// implementations wrap theirs in it (or return a type satisfying
// errors.As for it) so the plugin can answer code 4.
type NetNSError interface{ NetNS() string }

// LinkExistsError marks an interface name already in use.
type LinkExistsError interface{ LinkName() string }

// cniError maps an error to a CNI error with the right code; msg says what
// was being done.
func cniError(msg string, err error) *types.Error {
	var ce *config.Error
	var ns NetNSError
	var le LinkExistsError
	var te *types.Error
	switch {
	case errors.As(err, &te):
		return te
	case errors.As(err, &ce):
		return types.NewError(types.ErrInvalidNetworkConfig, "invalid network configuration: "+ce.Error(), "")
	case errors.Is(err, store.ErrUnavailable):
		return types.NewError(types.ErrTryAgainLater, msg+": "+err.Error(), "")
	case errors.Is(err, ipam.ErrExhausted):
		return types.NewError(ErrPoolExhausted, msg+": "+err.Error(), "")
	case errors.As(err, &ns):
		return types.NewError(types.ErrInvalidEnvironmentVariables, msg+": CNI_NETNS "+err.Error()+": pass the path of an existing network namespace", "")
	case errors.As(err, &le):
		return types.NewError(ErrInterfaceExists, msg+": "+err.Error()+": pick another CNI_IFNAME, or DEL the attachment that holds it", "")
	}
	return types.NewError(types.ErrInternal, msg+": "+err.Error(), "")
}
