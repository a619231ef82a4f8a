package doctor

// Check is one check of the doctor: its stable code, home layer, severity
// and a one-line summary. Checks lists them all; `duetctl doctor --list`
// prints it, and a test makes sure every code has a fixture.
type Check struct {
	Code     string   `json:"code"`
	Layer    Layer    `json:"layer"`
	Severity Severity `json:"severity"`
	Summary  string   `json:"summary"`
}

// Checks is the catalogue of every check, by layer. ULA001 can come from
// any layer that holds a prefix; its home layer is "input".
var Checks = []Check{
	{"INPUT001", LayerInput, Error, "the file is not valid JSON or YAML (the finding gives the line)"},
	{"INPUT002", LayerInput, Hint, "a file named on the command line is of no kind the doctor knows"},
	{"ULA001", LayerInput, Hint, "a hand-picked ULA prefix (a Global ID starting with 16 zero bits, like fd00:1::, or fc00::/8): RFC 4193 wants it random"},

	{"HOST001", LayerHost, Error, "IPv6 is disabled (disable_ipv6=1) for all, default or an uplink or container interface"},
	{"HOST002", LayerHost, Error, "forwarding is off for a family (net.ipv4.ip_forward, net.ipv6.conf.all.forwarding)"},
	{"HOST003", LayerHost, Error, "IPv6 forwarding is on and the default route came from an RA, but the uplink's accept_ra is not 2"},
	{"HOST004", LayerHost, Warning, "no default route for a family"},
	{"HOST005", LayerHost, Error, "container addresses sit in an uplink's on-link prefix but proxy_ndp is off there"},
	{"HOST006", LayerHost, Warning, "proxy_ndp is on but a container address has no proxy neighbour entry"},
	{"HOST007", LayerHost, Error, "a private container prefix (ULA, RFC 1918) has no masquerade rule"},
	{"HOST008", LayerHost, Hint, "the firewall ruleset could not be read, so masquerade was not checked"},
	{"HOST009", LayerHost, Error, "an interface that should carry IPv6 has an MTU below 1280"},
	{"HOST010", LayerHost, Warning, "a container-side interface has a larger MTU than the uplink"},

	{"DOCKERH001", LayerHost, Warning, "a running Docker network without IPv6 (docker network inspect: EnableIPv6 false)"},
	{"DOCKERH002", LayerHost, Warning, "a running Docker network with IPv6 on but no IPv6 subnet"},
	{"DOCKERH003", LayerHost, Error, "a running Docker network whose driver or IPAM plugin socket is missing"},
	{"DOCKER001", LayerDocker, Warning, "\"ipv6\" is not true: the default bridge is IPv4-only"},
	{"DOCKER002", LayerDocker, Warning, "\"ipv6\" is true but there is no \"fixed-cidr-v6\" and no IPv6 default address pool"},
	{"DOCKER003", LayerDocker, Error, "an invalid prefix or pool (fixed-cidr-v6, default-address-pools)"},
	{"DOCKER004", LayerDocker, Warning, "\"fixed-cidr-v6\" is smaller than /80"},
	{"DOCKER005", LayerDocker, Warning, "IPv6 is on but \"ip6tables\" is not true: no NAT66 for ULA, no filtering for global prefixes"},
	{"DOCKER006", LayerDocker, Warning, "\"ip6tables\" without \"experimental\": Docker 20.10 to 26 refuses to start"},
	{"DOCKER007", LayerDocker, Warning, "\"default-address-pools\" has no IPv6 pool"},
	{"DOCKER008", LayerDocker, Warning, "the userland proxy hides IPv6 clients' addresses from containers without IPv6 (moby#44408)"},

	{"COMPOSE001", LayerCompose, Warning, "a network without \"enable_ipv6: true\" (IPv4 only), the implicit default network too"},
	{"COMPOSE002", LayerCompose, Warning, "\"enable_ipv6: true\" with no IPv6 subnet in ipam.config"},
	{"COMPOSE003", LayerCompose, Error, "an invalid subnet or gateway in ipam.config"},
	{"COMPOSE004", LayerCompose, Warning, "a service publishes ports for IPv6 clients while none of its networks has IPv6"},
	{"COMPOSE005", LayerCompose, Hint, "a port is published on one family's wildcard only (\"0.0.0.0:…\" IPv4, \"[::]:…\" IPv6)"},
	{"COMPOSE006", LayerCompose, Warning, "file format \"version: 3\" with enable_ipv6: docker-compose v1 rejects it"},

	{"KUBEADM001", LayerKubeadm, Error, "an invalid podSubnet, serviceSubnet or clusterCIDR (parse, more than two, one family twice)"},
	{"KUBEADM002", LayerKubeadm, Error, "podSubnet and serviceSubnet cover different families"},
	{"KUBEADM003", LayerKubeadm, Warning, "podSubnet and serviceSubnet list the families in different orders"},
	{"KUBEADM004", LayerKubeadm, Error, "a node CIDR mask size that does not fit the pod subnet"},
	{"KUBEADM005", LayerKubeadm, Error, "dual-stack on a version that needs the IPv6DualStack gate (1.16 to 1.20) without it"},
	{"KUBEADM006", LayerKubeadm, Error, "the IPv6DualStack gate on a version that rejects it (false on 1.23+, any value on 1.25+)"},
	{"KUBEADM007", LayerKubeadm, Warning, "the IPv6DualStack gate with no kubernetesVersion: rejected from 1.25"},
	{"KUBEADM008", LayerKubeadm, Error, "a service subnet larger than the version allows (2^20 addresses, an IPv6 /108, before 1.33; an IPv6 /64 from 1.33)"},
	{"KUBEADM009", LayerKubeadm, Warning, "a service subnet larger than 2^20 addresses (an IPv6 /108) and no kubernetesVersion"},
	{"KUBEADM010", LayerKubeadm, Warning, "kube-proxy's clusterCIDR misses a family of the pod subnet or differs from it"},

	{"KUBE001", LayerKubernetes, Warning, "a Service without ipFamilyPolicy is SingleStack: one family only (kubernetes#118897)"},
	{"KUBE002", LayerKubernetes, Error, "an invalid ipFamilyPolicy / ipFamilies / clusterIPs combination"},
	{"KUBE003", LayerKubernetes, Error, "spec.ipFamily (singular) was removed in Kubernetes 1.20"},
	{"KUBE004", LayerKubernetes, Error, "a Service needs a family the given cluster configuration does not have"},
	{"KUBE005", LayerKubernetes, Warning, "a NetworkPolicy's ipBlocks cover one family only in a direction (asymmetric policy)"},
	{"KUBE006", LayerKubernetes, Error, "an invalid ipBlock (cidr, or an except outside it)"},
	{"KUBE007", LayerKubernetes, Hint, "a container's args or env bind 0.0.0.0 only: IPv4 only"},

	{"CNI001", LayerCNI, Warning, "pods get one family only (host-local ranges, calico-ipam assign_*, Flannel networks)"},
	{"CNI002", LayerCNI, Warning, "host-local gives pods a default route for one family only"},
	{"CNI003", LayerCNI, Warning, "a private pool (ULA, RFC 1918) without NAT outgoing (calico#2954)"},
	{"CNI004", LayerCNI, Error, "IPIP on an IPv6 Calico pool (unsupported)"},
	{"CNI005", LayerCNI, Error, "an invalid pool or range (Calico cidr or blockSize, host-local subnet, Flannel network)"},
	{"CNI006", LayerCNI, Error, "duet's own configuration is rejected by its parser"},
	{"CNI007", LayerCNI, Warning, "Flannel's IPv6Network and EnableIPv6 disagree: IPv6 is ignored, or Flannel fails"},
}

func severityOf(code string) Severity {
	for _, c := range Checks {
		if c.Code == code {
			return c.Severity
		}
	}
	panic("doctor: unknown check code " + code)
}
