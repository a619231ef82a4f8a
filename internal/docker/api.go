// Package docker is duet's network and IPAM driver for Docker Engine: the
// libnetwork remote-driver protocol (a "legacy" socket plugin in
// /run/docker/plugins), served by duetd --docker.
//
// A Docker network of driver duet is a duet network: its containers get
// the same interface the CNI plugin makes (addresses without DAD,
// link-local gateways answered by the host, permanent neighbours, the RA
// guard and anti-spoofing), from duet's IPAM and store, so duetd routes
// their blocks between hosts like any other. Docker does not move or
// address the interface itself: Join makes it inside the sandbox and
// answers only the gateways, which Docker turns into the default routes.
//
// The driver keeps its networks, endpoints and pools in duet's store
// (bolt on one host, etcd for several), so Docker and duetd can each
// restart without the other losing anything. The logic here is over
// narrow interfaces (Kernel, the store); the kernel side is the CNI
// plugin's own code.
package docker

// The protocol's JSON, as libnetwork's remote driver and IPAM client send
// and read it (moby libnetwork/drivers/remote/api and ipams/remote/api).
// Fields are named as on the wire.

// errResponse is every method's error answer.
type errResponse struct {
	Err string
}

type activateResponse struct {
	Implements []string
}

type capabilitiesResponse struct {
	Scope             string
	ConnectivityScope string
	// GwAllocChecker (Docker 28) asks Docker to call GwAllocCheck before
	// CreateNetwork; duet's gateways come from its pools either way.
	GwAllocChecker bool
}

type gwAllocCheckRequest struct {
	Options map[string]any
}

type gwAllocCheckResponse struct {
	SkipIPv4, SkipIPv6 bool
}

// ipamData is one pool of a network, as the network driver sees it.
type ipamData struct {
	AddressSpace string
	Pool         string
	Gateway      string
	AuxAddresses map[string]string
}

type createNetworkRequest struct {
	NetworkID string
	Options   map[string]any
	IPv4Data  []ipamData
	IPv6Data  []ipamData
}

type networkRequest struct {
	NetworkID string
}

type endpointInterface struct {
	Address     string `json:",omitempty"`
	AddressIPv6 string `json:",omitempty"`
	MacAddress  string `json:",omitempty"`
}

type createEndpointRequest struct {
	NetworkID  string
	EndpointID string
	Interface  *endpointInterface
	Options    map[string]any
}

type createEndpointResponse struct {
	Interface *endpointInterface `json:",omitempty"`
}

type endpointRequest struct {
	NetworkID  string
	EndpointID string
}

type endpointInfoResponse struct {
	Value map[string]any
}

type joinRequest struct {
	NetworkID  string
	EndpointID string
	SandboxKey string
	Options    map[string]any
}

// routeConnected is libnetwork's types.CONNECTED: a route through the
// endpoint's interface, without a next hop.
const routeConnected = 1

type staticRoute struct {
	Destination string
	RouteType   int
	NextHop     string
}

type interfaceName struct {
	SrcName   string
	DstPrefix string
}

type joinResponse struct {
	InterfaceName         *interfaceName `json:",omitempty"`
	Gateway               string         `json:",omitempty"`
	GatewayIPv6           string         `json:",omitempty"`
	StaticRoutes          []staticRoute  `json:",omitempty"`
	DisableGatewayService bool
}

type externalConnectivityRequest struct {
	NetworkID  string
	EndpointID string
	Options    map[string]any
}

// IPAM.

type addressSpacesResponse struct {
	LocalDefaultAddressSpace  string
	GlobalDefaultAddressSpace string
}

type ipamCapabilitiesResponse struct {
	RequiresMACAddress    bool
	RequiresRequestReplay bool
}

type requestPoolRequest struct {
	AddressSpace string
	Pool         string
	SubPool      string
	Options      map[string]string
	V6           bool
}

type requestPoolResponse struct {
	PoolID string
	Pool   string
	Data   map[string]string
}

type releasePoolRequest struct {
	PoolID string
}

type requestAddressRequest struct {
	PoolID  string
	Address string
	Options map[string]string
}

type requestAddressResponse struct {
	Address string
	Data    map[string]string
}

type releaseAddressRequest struct {
	PoolID  string
	Address string
}

// Docker's option and label names (libnetwork/netlabel).
const (
	optGeneric     = "com.docker.network.generic"
	optEnableIPv6  = "com.docker.network.enable_ipv6"
	optEnableIPv4  = "com.docker.network.enable_ipv4"
	optMTU         = "com.docker.network.driver.mtu"
	optPortMap     = "com.docker.network.portmap"
	optAddressType = "RequestAddressType"
	addressTypeGW  = "com.docker.network.gateway"
	dataGateway    = "com.docker.network.gateway"
)

// duet's own options: docker network create -o duet.mode=bridge, and
// --ipam-opt duet.block-size=120 / duet.nat-outgoing=false.
const (
	OptMode         = "duet.mode"
	OptBridge       = "duet.bridge"
	IPAMBlockSize   = "duet.block-size"
	IPAMNATOutgoing = "duet.nat-outgoing"
	// AddressSpace is the one address space duet's IPAM answers.
	AddressSpace = "duet"
)
