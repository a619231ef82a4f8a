#!/usr/bin/env bash
# Every test: unit tests and, as root, the privileged tests in network
# namespaces. Run as root on Debian 12; in CI (CI=true) a privileged test
# fails instead of skipping when root is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
bash hack/deps.sh
export PATH=/usr/local/go/bin:$PATH
make build
make test
