// Package kerneltest holds helpers for privileged tests of duet's kernel
// plumbing: root checks that fail loudly in CI, throwaway network
// namespaces and names, and host forwarding that is put back afterwards.
package kerneltest

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/duetnet/duet/internal/kernel"
)

// RequireRoot skips the test when not root, or fails it when the CI
// environment variable is set: in CI a skipped privileged test is a test
// that silently stopped running.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatal("privileged test needs root (CI is set, so this is a failure, not a skip)")
	}
	t.Skip("privileged test: run as root")
}

// Name returns prefix followed by random hex, within the kernel's 15-byte
// limit for interface names, so tests never collide with real interfaces.
func Name(prefix string) string {
	s := fmt.Sprintf("%s%08x", prefix, rand.Uint32())
	return s[:min(len(s), 15)]
}

// NetNS creates a named network namespace "duet-t-<random>" and returns its
// path; it is removed in t.Cleanup, whatever the test's outcome, together
// with every interface inside it.
func NetNS(t testing.TB) string {
	t.Helper()
	name := Name("duet-t-")
	Run(t, "ip", "netns", "add", name)
	path := filepath.Join("/var/run/netns", name)
	t.Cleanup(func() {
		if _, err := os.Stat(path); os.IsNotExist(err) {
			return // the test deleted it
		}
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", name, err, out)
		}
	})
	return path
}

// NetNSName returns the name "ip netns exec" wants for a path from NetNS.
func NetNSName(path string) string { return filepath.Base(path) }

// DeleteLinkOnCleanup removes a host link the test made (or may have made)
// when the test ends.
func DeleteLinkOnCleanup(t testing.TB, name string) {
	t.Helper()
	t.Cleanup(func() {
		host, err := kernel.HostNS()
		if err != nil {
			t.Errorf("cleanup %s: %v", name, err)
			return
		}
		defer host.Close()
		if err := host.DeleteLink(name); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
}

// Run runs a command and returns its standard output, failing the test on
// error. Standard error is left out of the result: iproute2 warns there
// about other tests' namespaces coming and going.
func Run(t testing.TB, name string, args ...string) string {
	t.Helper()
	var stderr strings.Builder
	cmd := exec.Command(name, args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v: %s%s", name, strings.Join(args, " "), err, out, stderr.String())
	}
	return string(out)
}

// lockPath serialises tests that change host-wide sysctls, across test
// binaries: go test runs packages in parallel, and one package putting
// forwarding back off would break another's pings.
const lockPath = "/run/duet-test-host-sysctl.lock"

// LockHostSysctls holds a host-wide lock until the test ends, for tests
// that change host-wide sysctls. Take it at most once per test.
func LockHostSysctls(t testing.TB) {
	t.Helper()
	f, err := os.OpenFile(lockPath, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() }) // closing releases the lock
}

// Forwarding turns host forwarding on for both families with
// kernel.EnableForwarding and puts every changed sysctl back in t.Cleanup,
// holding LockHostSysctls until then.
func Forwarding(t testing.TB) {
	t.Helper()
	LockHostSysctls(t)
	changes, err := kernel.EnableForwarding(netip.IPv6Unspecified(), netip.IPv4Unspecified())
	t.Cleanup(func() { // runs before the lock's cleanup: last in, first out
		if err := kernel.RestoreSysctls(changes); err != nil {
			t.Errorf("restore sysctls: %v", err)
		}
	})
	if err != nil {
		t.Fatalf("enable forwarding: %v", err)
	}
	for _, c := range changes {
		t.Logf("sysctl %s", c)
	}
	AllowHostForward(t)
}

// AllowHostForward lets the tests' IPv4 pod traffic through the host's
// iptables FORWARD chain while the test runs, when that chain's policy
// is DROP, as Docker Engine sets it on every host it runs on. A packet
// that one base chain at the forward hook drops is dropped, whatever
// duet's own table says; duet itself does not yet open that chain (see
// the README's Docker notes), so these tests, whose host is the test
// machine's own namespace, open it for 10.0.0.0/8 and close it again.
func AllowHostForward(t testing.TB) {
	t.Helper()
	out, err := exec.Command("iptables", "-S", "FORWARD").Output()
	if err != nil || !strings.HasPrefix(string(out), "-P FORWARD DROP") {
		return
	}
	rules := [][]string{{"-s", "10.0.0.0/8"}, {"-d", "10.0.0.0/8"}}
	for _, r := range rules {
		args := append([]string{"-I", "FORWARD", "1"}, append(r, "-m", "comment", "--comment", "duet test", "-j", "ACCEPT")...)
		if out, err := exec.Command("iptables", args...).CombinedOutput(); err != nil {
			t.Fatalf("iptables %v: %v: %s", args, err, out)
		}
	}
	t.Cleanup(func() {
		for _, r := range rules {
			args := append([]string{"-D", "FORWARD"}, append(r, "-m", "comment", "--comment", "duet test", "-j", "ACCEPT")...)
			if out, err := exec.Command("iptables", args...).CombinedOutput(); err != nil {
				t.Errorf("iptables %v: %v: %s", args, err, out)
			}
		}
	})
	t.Log("host iptables FORWARD policy is DROP (Docker): accepting 10.0.0.0/8 for this test")
}
