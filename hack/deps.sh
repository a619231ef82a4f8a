#!/usr/bin/env bash
# Installs what duet's build, tests, demo and benchmarks need on Debian 12,
# as root: Debian packages, and the Go modules of go.mod.
set -euo pipefail
export PATH=/usr/local/go/bin:$PATH
need=()
for pkg in iproute2 iputils-ping procps nftables containernetworking-plugins iperf3 make radvd bird2; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "hack/deps.sh: installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need[@]}" >/dev/null
fi
command -v go >/dev/null || { echo "hack/deps.sh: Go is missing: install Go 1.26 at /usr/local/go" >&2; exit 1; }
cd "$(dirname "$0")/.."
go mod download
