#!/usr/bin/env bash
# Every test: unit tests and, as root, the privileged tests in network
# namespaces. Run as root on Debian 12; in CI (CI=true) a privileged test
# fails instead of skipping when root is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
bash hack/deps.sh
export PATH=/usr/local/go/bin:$PATH
make build
# The upstream Kubernetes binaries first (cached; cold about 15 minutes):
# the image tests and the kube lab need them.
make kube
make test
# The kube lab: a real cluster with duet as its CNI, connectivity, and
# upstream's dual-stack e2e specs.
make test-kube
