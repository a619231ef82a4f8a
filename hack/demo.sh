#!/usr/bin/env bash
# The main job: build duet, bring up the lab on its defaults (2 nodes, 2
# pods each, dual-stack, direct routing: node namespaces on a switch, duetd
# on each, pods made by the real duet plugin), and prove every path in both
# families. Run as root on Debian 12. `./bin/duetctl lab down` removes it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash hack/deps.sh
export PATH=/usr/local/go/bin:$PATH
make build
./bin/duetctl lab down >/dev/null 2>&1 || true
./bin/duetctl lab up "$@"
./bin/duetctl lab status
./bin/duetctl connectivity
echo
echo "The lab is still up: try ./bin/duetctl lab status --json, ip netns list,"
echo "ip netns exec duet-lab-node1-pod1 ping fd00:d0e7::40; remove it with ./bin/duetctl lab down"
