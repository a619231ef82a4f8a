#!/usr/bin/env bash
# The main job: build duet, bring up the lab on its defaults (2 nodes, 2
# pods each, dual-stack, direct routing: node namespaces on a switch, duetd
# on each, pods made by the real duet plugin), and prove every path in both
# families. Run as root on Debian 12. `./bin/duetctl lab down` removes it.
# Extra arguments go to `duetctl lab up` (try --nodes 4 --pods-per-node 10,
# --routing vxlan, --topology routed, --family ipv6).
set -euo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS
say() { printf '\n==> [%3ds] %s\n' $((SECONDS - start)) "$*"; }
say "installing what is missing (Debian packages, Go modules: the first run downloads, later runs skip this)"
bash hack/deps.sh
export PATH=/usr/local/go/bin:$PATH
say "building duet's binaries into bin/ (first build about a minute, then seconds)"
make --no-print-directory build
say "removing any earlier lab"
./bin/duetctl lab down >/dev/null 2>&1 || true
say "bringing the lab up: ./bin/duetctl lab up $*"
./bin/duetctl lab up "$@"
say "the lab"
./bin/duetctl lab status
say "proving every path in both families: ./bin/duetctl connectivity"
./bin/duetctl connectivity
say "done"
echo "The lab is still up: try ./bin/duetctl lab status --json, ip netns list,"
echo "ip netns exec duet-lab-node1-pod1 ping fd00:d0e7::40; remove it with ./bin/duetctl lab down"
