# Seed 001: the classic "Docker and IPv6" page.
docker daemon --ipv6 --fixed-cidr-v6="2001:db8:1::/64"

# The NDP proxy scenario: a /125 carved from the host's on-link /64.
docker daemon --ipv6 --fixed-cidr-v6 2001:db8::c008/125
