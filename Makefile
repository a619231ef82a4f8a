# duet: IPv6-first, dual-stack container networking.
export PATH := /usr/local/go/bin:$(PATH)
BINS := duet duet-ipam duetctl duetd duet-pause
# Upstream CNI plugins duet's image carries (hostPort, the pod's lo); go.mod
# pins them as tools.
CNI_PLUGINS := github.com/containernetworking/plugins/plugins/meta/portmap github.com/containernetworking/plugins/plugins/main/loopback
GO ?= go

.PHONY: bench-scale build test test-unit test-privileged test-kube e2e-kube e2e-netpol kube bench bench-kube fuzz clean deps demo image

build:
	@mkdir -p bin
	CGO_ENABLED=0 $(GO) build -trimpath -o bin/ $(addprefix ./cmd/,$(BINS)) $(CNI_PLUGINS)

# duet's image, without Docker: docker load -i bin/duet-image.tar, or
# ctr -n k8s.io images import bin/duet-image.tar.
image: build
	./bin/duetctl image build --out bin/duet-image.tar --bin-dir bin

deps:
	bash hack/deps.sh

# Unit tests run anywhere; privileged tests (*_privileged_test.go) need
# root and skip without it, except in CI (CI=true), where they fail.
test: build
	$(GO) vet ./...
	$(GO) test -count=1 -p 1 ./...

# The upstream Kubernetes the kube lab runs, built from Go modules and
# cached in /var/cache/duet/kube (about 15 minutes cold, seconds warm).
kube:
	bash hack/kube/build.sh

# The kube lab for real (root): lab up --kubernetes (dual, kube-proxy
# nftables), connectivity, upstream [Feature:IPv6DualStack] and Netpol
# (duet enforcing NetworkPolicy), lab down.
# DUET_KUBE_FAMILY, DUET_KUBE_PROXY and DUET_KUBE_FOCUS pick others.
test-kube: build kube
	$(GO) test -tags kubelab -count=1 -v -timeout 80m -run TestKubeLab ./internal/kubelab/

# Upstream conformance against the kube lab, in dual and ipv6 with
# kube-proxy nftables, and dual with iptables; prints passed/failed/skipped.
e2e-kube: build kube
	bash hack/e2e-kube.sh

# Upstream's NetworkPolicy suite (every [sig-network] Netpol spec but
# SCTP connectivity, which needs the sctp module) against the kube lab in
# ipv4, ipv6 and dual; prints passed/failed/skipped per family.
e2e-netpol: build kube
	CONFIGS="$${CONFIGS:-ipv4/nftables ipv6/nftables dual/nftables}" \
	FOCI='\[sig-network\] Netpol' \
	SKIP='\[Feature:SCTPConnectivity\]|\[Serial\]|\[Disruptive\]|\[Slow\]|\[Flaky\]' \
	OUT=/var/tmp/duet-e2e/netpol bash hack/e2e-kube.sh

test-unit:
	$(GO) test -count=1 ./internal/ipam/ ./internal/config/ ./internal/store/...

fuzz:
	$(GO) test ./internal/config/ -run XXX -fuzz FuzzParse -fuzztime 60s
	$(GO) test ./internal/doctor/ -run XXX -fuzz FuzzParse -fuzztime 60s

bench: build
	$(GO) test -run XXX -bench . -benchtime 1x -count 1 -timeout 30m $$($(GO) list ./bench/... | grep -v /bench/scale) ./internal/bgp/ ./internal/store/etcd/
	$(MAKE) bench-kube

# The kube lab's benchmark: pod ready latency under the kubelet, duet
# against bridge + host-local in the same lab and run; lab up time;
# duetd's memory.
bench-kube: build kube
	$(GO) test -tags kubelab -run XXX -bench . -benchtime 1x -count 1 -timeout 60m ./bench/kube/

# The scale simulator (root): 100, 1,000 and 5,000 simulated nodes against
# the lab's real agents and etcd; prints CPU, memory, route convergence and
# etcd load at each size. CI runs its 100-node version (TestScale).
bench-scale: build
	$(GO) test -run XXX -bench Scale -benchtime 1x -count 1 -timeout 120m -v ./bench/scale/ | grep -v '^node[0-9]*: '

demo: build
	./bin/duetctl demo

clean:
	rm -rf bin
