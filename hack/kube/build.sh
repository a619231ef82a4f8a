#!/usr/bin/env bash
# Builds the upstream Kubernetes binaries the kube lab runs, from Go modules
# only, through the separate module in this directory (so duet's own go.mod
# never requires k8s.io/kubernetes). The pin is this module's go.mod; the
# binaries are cached per version under $DUET_KUBE_CACHE (default
# /var/cache/duet/kube) and a warm run is a no-op of a few seconds.
#
#   bash hack/kube/build.sh            # prints the bin directory last
#
# Env: DUET_KUBE_CACHE, WHAT (a subset of the targets below).
set -euo pipefail
export PATH=/usr/local/go/bin:$PATH
HERE=$(cd "$(dirname "$0")" && pwd)
VERSION=$(awk '$1=="k8s.io/kubernetes"{print $2; exit}' "$HERE/go.mod")
[ -n "$VERSION" ] || { echo "hack/kube/build.sh: no k8s.io/kubernetes version in $HERE/go.mod" >&2; exit 1; }
CACHE=${DUET_KUBE_CACHE:-/var/cache/duet/kube}
BIN=$CACHE/$VERSION/bin
# Own caches: the upstream graph is ~5 GiB of build cache, kept apart from the
# product's so neither evicts the other.
export GOCACHE=$CACHE/gocache GOMODCACHE=$CACHE/gomod
export CGO_ENABLED=0 GOFLAGS=-mod=readonly GOTOOLCHAIN=local
WHAT=${WHAT:-"kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl e2e.test agnhost ginkgo coredns"}
mkdir -p "$BIN"
say() { echo "duet kube build [$(date +%T)] $*" >&2; }

# Version stamping as upstream's hack/lib/version.sh does it: the kubelet's and
# e2e's version checks read these. buildDate is the release's own commit time,
# so the ldflags never change and a rebuild is a cache hit.
ver=${VERSION#v}; major=${ver%%.*}; rest=${ver#*.}; minor=${rest%%.*}
cd "$HERE"
when=$(go list -m -f '{{.Time}}' k8s.io/kubernetes 2>/dev/null | awk '{print $1"T"$2"Z"}')
ldf="-s -w"
for p in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
  ldf+=" -X $p.gitVersion=$VERSION -X $p.gitMajor=$major -X $p.gitMinor=$minor"
  ldf+=" -X $p.gitTreeState=clean -X $p.buildDate=${when:-1970-01-01T00:00:00Z}"
done

build() { # output package [go build|test -c]
  local out=$1 pkg=$2 mode=${3:-build}
  say "building $out ($pkg)"
  local t0=$SECONDS
  if [ "$mode" = test ]; then
    nice -n 10 go test -c -trimpath -ldflags "$ldf" -o "$BIN/$out.tmp" "$pkg"
  else
    nice -n 10 go build -trimpath -ldflags "$ldf" -o "$BIN/$out.tmp" "$pkg"
  fi
  mv -f "$BIN/$out.tmp" "$BIN/$out"
  say "built $out in $((SECONDS - t0)) s"
}

# go build relinks every time (about a minute for all of these), so a stamp
# of what the binaries were built from makes a warm run a no-op.
stamp=$( (cat "$HERE/go.mod" "$HERE/go.sum" "$HERE/build.sh"; go version; echo "$WHAT") | sha256sum | cut -c1-16)
if [ "$(cat "$BIN/.stamp" 2>/dev/null)" = "$stamp" ]; then
  say "Kubernetes $VERSION: cached in $BIN"
  echo "$BIN"
  exit 0
fi
rm -f "$BIN/.stamp"
say "Kubernetes $VERSION into $BIN (cold: about 15 minutes on 2 cores; warm: seconds)"
say "downloading modules"
go mod download
cmds=()
for w in $WHAT; do
  case $w in
    kube-apiserver|kube-controller-manager|kube-scheduler|kubelet|kube-proxy|kubectl) cmds+=("$w") ;;
  esac
done
if [ ${#cmds[@]} -gt 0 ]; then
  # One go build for all commands shares the compile of their common graph.
  say "building ${cmds[*]}"
  t0=$SECONDS
  pkgs=(); for c in "${cmds[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$c"); done
  mkdir -p "$BIN/.tmp"
  nice -n 10 go build -trimpath -ldflags "$ldf" -o "$BIN/.tmp/" "${pkgs[@]}"
  for c in "${cmds[@]}"; do mv -f "$BIN/.tmp/$c" "$BIN/$c"; done
  say "built ${#cmds[@]} commands in $((SECONDS - t0)) s"
fi
for w in $WHAT; do
  case $w in
    agnhost) build agnhost k8s.io/kubernetes/test/images/agnhost ;;
    ginkgo) build ginkgo github.com/onsi/ginkgo/v2/ginkgo ;;
    e2e.test) build e2e.test k8s.io/kubernetes/test/e2e test ;;
    coredns) build coredns github.com/coredns/coredns ;;
  esac
done
echo "$stamp" > "$BIN/.stamp"
echo "$BIN"
