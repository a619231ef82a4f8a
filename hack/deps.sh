#!/usr/bin/env bash
# Installs what duet's build, tests, demo and benchmarks need on Debian 12,
# as root: Debian packages, and the Go modules of go.mod.
set -euo pipefail
export PATH=/usr/local/go/bin:$PATH
need=()
# The kube lab adds a container runtime (containerd, runc; any containerd
# already on the host, such as Docker's, serves too), the tools the e2e
# images carry (busybox, static, dash, curl, wget, OpenBSD nc, dig), and nsenter,
# iptables and conntrack for the nodes.
pkgs="iproute2 iputils-ping procps nftables containernetworking-plugins iperf3 make radvd bird2"
pkgs+=" util-linux iptables conntrack busybox-static dash curl wget netcat-openbsd bind9-dnsutils"
# The Docker driver's tests run on the machine's Docker Engine, with
# Compose (Debian's docker-compose) and images made from busybox-static.
command -v docker >/dev/null && { command -v docker-compose >/dev/null || pkgs+=" docker-compose"; }
command -v containerd >/dev/null || pkgs+=" containerd"
command -v runc >/dev/null || pkgs+=" runc"
for pkg in $pkgs; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "hack/deps.sh: installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  echo "hack/deps.sh: apt-get update"
  apt-get update -qq
  echo "hack/deps.sh: apt-get install (a minute or two)"
  apt-get install -y -qq "${need[@]}" >/dev/null
fi
command -v go >/dev/null || { echo "hack/deps.sh: Go is missing: install Go 1.26 at /usr/local/go" >&2; exit 1; }
v=$(go env GOVERSION)
case "$v" in
  go1.2[6-9]*|go1.[3-9][0-9]*|go[2-9]*) ;;
  *) echo "hack/deps.sh: $v is too old: duet needs Go 1.26 or later at /usr/local/go (https://go.dev/dl/)" >&2; exit 1 ;;
esac
cd "$(dirname "$0")/.."
echo "hack/deps.sh: go mod download (cached after the first run)"
go mod download
