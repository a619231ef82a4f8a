#!/bin/sh
sudo sysctl -w net.ipv6.conf.all.forwarding=1

sudo kubeadm init \
    --pod-network-cidr="fd3c:9a71:52e0::/48,10.244.0.0/16" \
    --service-cidr="fd3c:9a71:52e1::/108,10.96.0.0/12" \
    --apiserver-advertise-address="2001:db8::11"
