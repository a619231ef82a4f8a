dockerd --ipv6 --ip6tables --experimental --fixed-cidr-v6="2001:db8:1::/64"
