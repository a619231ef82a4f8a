package kernel

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
)

// Sysctl is a desired value for a key under /proc/sys.
type Sysctl struct {
	// Name is dotted, as sysctl(8) writes it: net.ipv6.conf.eth0.accept_ra.
	// A '.' inside an interface name is written '/' (use IPv6Conf).
	Name  string
	Value string
	// Optional sysctls are skipped when the key does not exist, e.g. the
	// IPv6 hardening of an IPv4-only pod on a kernel booted without IPv6.
	Optional bool
	// OnlyIf, when set, leaves the key alone unless its value is OnlyIf at
	// the time of writing, so a decision taken on an earlier read does not
	// overwrite what someone else set meanwhile.
	OnlyIf string
}

// String renders s as NAME=VALUE.
func (s Sysctl) String() string { return s.Name + "=" + s.Value }

// SysctlChange records one value SetSysctls changed, for logs and to put
// it back.
type SysctlChange struct {
	Name, Old, New string
}

// String renders c as "NAME: OLD -> NEW" for logs.
func (c SysctlChange) String() string { return fmt.Sprintf("%s: %s -> %s", c.Name, c.Old, c.New) }

// IPv6Conf names the per-interface IPv6 key: net.ipv6.conf.IF.KEY.
func IPv6Conf(ifName, key string) string {
	return "net.ipv6.conf." + strings.ReplaceAll(ifName, ".", "/") + "." + key
}

// IPv4Conf names the per-interface IPv4 key: net.ipv4.conf.IF.KEY.
func IPv4Conf(ifName, key string) string {
	return "net.ipv4.conf." + strings.ReplaceAll(ifName, ".", "/") + "." + key
}

// sysctlPath turns a dotted name into its /proc/sys path, swapping '.' and
// '/' as sysctl(8) does.
func sysctlPath(name string) string {
	return "/proc/sys/" + strings.Map(func(r rune) rune {
		switch r {
		case '.':
			return '/'
		case '/':
			return '.'
		}
		return r
	}, name)
}

// Sysctl reads a key in the namespace. Equivalent to: sysctl -n NAME
func (n *NS) Sysctl(name string) (string, error) {
	var v string
	err := n.do(func() error {
		var err error
		v, err = readSysctl(name)
		return err
	})
	return v, err
}

// SetSysctls writes each value that differs, in order, from inside the
// namespace, and returns what it changed, even on error.
// Equivalent to: sysctl -w NAME=VALUE ...
func (n *NS) SetSysctls(want []Sysctl) ([]SysctlChange, error) {
	var changes []SysctlChange
	err := n.do(func() error {
		for _, s := range want {
			old, err := readSysctl(s.Name)
			if s.Optional && errors.Is(err, fs.ErrNotExist) {
				continue
			}
			if err != nil {
				return err
			}
			if old == s.Value || s.OnlyIf != "" && old != s.OnlyIf {
				continue
			}
			if err := writeSysctl(s.Name, s.Value); err != nil {
				return err
			}
			changes = append(changes, SysctlChange{Name: s.Name, Old: old, New: s.Value})
		}
		return nil
	})
	if err != nil {
		return changes, fmt.Errorf("sysctl in %s: %w", n, err)
	}
	return changes, nil
}

func readSysctl(name string) (string, error) {
	b, err := os.ReadFile(sysctlPath(name))
	if err != nil {
		return "", fmt.Errorf("read %s: %w", name, err)
	}
	return strings.TrimSpace(string(b)), nil
}

func writeSysctl(name, value string) error {
	if err := os.WriteFile(sysctlPath(name), []byte(value), 0o644); err != nil {
		return fmt.Errorf("write %s=%s: %w", name, value, err)
	}
	return nil
}
