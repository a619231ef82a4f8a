#!/usr/bin/env bash
# Every test: unit tests and, as root, the privileged tests in network
# namespaces. Run as root on Debian 12; in CI (CI=true) a privileged test
# fails instead of skipping when root is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
bash hack/deps.sh
export PATH=/usr/local/go/bin:$PATH
make build
# A lab left up on this machine (an interrupted run, a demo) would make the
# lab tests refuse to start; sweep it first, and say so.
if compgen -G '/var/run/netns/duet-lab-*' >/dev/null; then
	echo "test.sh: a lab is up on this machine; taking it down first: $(ls /var/run/netns | grep '^duet-lab-' | tr '\n' ' ')"
	./bin/duetctl lab down || true
fi
# The upstream Kubernetes binaries first (cached; cold about 15 minutes):
# the image tests and the kube lab need them.
make kube
make test
# The kube lab: a real cluster with duet as its CNI, connectivity, and
# upstream's dual-stack e2e specs.
make test-kube
