#!/bin/sh
# Seed 003: the cluster built with kubeadm 1.18.5, then the IPv6-primary variant.
sudo sysctl -w net.ipv6.conf.all.forwarding=1

sudo kubeadm init \
    --feature-gates="IPv6DualStack=true" \
    --pod-network-cidr="10.244.0.0/16,fd00:1::/48" \
    --service-cidr="10.96.0.0/12,fd00::/108"

sudo kubeadm init \
    --feature-gates="IPv6DualStack=true" \
    --pod-network-cidr="fd00:1::/48,10.244.0.0/16" \
    --service-cidr="fd00::/108,10.96.0.0/12" \
    --apiserver-advertise-address="2001:db8::11"
