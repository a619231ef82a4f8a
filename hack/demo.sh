#!/usr/bin/env bash
# The main job: build duet and show two containers with IPv6 and IPv4,
# zero configuration. Run as root on Debian 12.
set -euo pipefail
cd "$(dirname "$0")/.."
bash hack/deps.sh
export PATH=/usr/local/go/bin:$PATH
make build
exec ./bin/duetctl demo "$@"
