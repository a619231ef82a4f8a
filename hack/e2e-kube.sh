#!/usr/bin/env bash
# Upstream e2e.test against the kube lab, once per configuration: for
# each, lab up --kubernetes, the dual-stack specs, the sig-network
# Granular Checks and the [sig-network] [Conformance] specs, lab down.
# Prints one "N passed, N failed, N skipped" line per configuration and
# per focus; exits non-zero if any spec failed.
#   CONFIGS="dual/nftables ipv6/nftables dual/iptables" PROCS=4 bash hack/e2e-kube.sh
# FOCI and SKIP replace the focus and the skip (make e2e-netpol sets
# them for upstream's Netpol suite).
set -uo pipefail
cd "$(dirname "$0")/.."
CONFIGS=${CONFIGS:-"dual/nftables ipv6/nftables dual/iptables"}
PROCS=${PROCS:-4}
NODES=${NODES:-2}
FOCI=${FOCI:-'\[Feature:IPv6DualStack\]|\[sig-network\] Networking Granular Checks|\[sig-network\].*\[Conformance\]'}
rc=0
for c in $CONFIGS; do
  fam=${c%/*}; mode=${c#*/}
  echo "== kube lab: family $fam, kube-proxy $mode, $NODES nodes"
  bin/duetctl lab down >/dev/null 2>&1
  if ! bin/duetctl lab up --kubernetes --nodes "$NODES" --family "$fam" --proxy-mode "$mode"; then
    echo "e2e ($fam/$mode): lab up failed"; rc=1; bin/duetctl lab down >/dev/null 2>&1; continue
  fi
  skip=${SKIP:-'SCTP|\[Serial\]|\[Disruptive\]|\[Slow\]|\[Flaky\]'}
  # The dual-stack specs assert a dual-stack cluster: on a single-stack
  # one 20 of the 22 fail by design (they do not skip themselves).
  [ "$fam" = dual ] || skip+='|\[Feature:IPv6DualStack\]'
  out=$(bin/duetctl lab e2e --procs "$PROCS" --focus "$FOCI" --skip "$skip" --out "${OUT:-/var/tmp/duet-e2e}/$fam-$mode" 2>&1) || rc=1
  echo "$out" | grep -E '^(e2e:|Ran |  FAIL)'
  echo "$out" | sed -n 's/^e2e: \([0-9]*\) passed, \([0-9]*\) failed, \([0-9]*\) skipped.*/'"$fam\/$mode"': \1 passed, \2 failed, \3 skipped/p'
  bin/duetctl lab down >/dev/null 2>&1
done
exit $rc
