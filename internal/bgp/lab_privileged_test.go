// Privileged tests of the speaker against BIRD 2 (Debian package bird2).
// Run as root:
//
//	go test -count=1 ./internal/bgp/
//	go test -count=1 -run '^$' -bench BenchmarkLearn1000 -benchtime 1x ./internal/bgp/
//
// Without root they skip, or fail when CI is set (kerneltest.RequireRoot).
package bgp_test

import (
	"context"
	"encoding/json"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/duetnet/duet/internal/kernel/kerneltest"
)

// The lab: namespace A runs the Speaker, namespace B runs BIRD, one veth
// between them with an address of each family on each end.
var (
	a6 = netip.MustParseAddr("fd00:b6b::1")
	b6 = netip.MustParseAddr("fd00:b6b::2")
	a4 = netip.MustParseAddr("10.246.0.1")
	b4 = netip.MustParseAddr("10.246.0.2")
	// b4md5 is B's second IPv4 address, for a session with a TCP MD5
	// password.
	b4md5 = netip.MustParseAddr("10.246.0.3")
	// silent6 is on the link but nobody has it: a peer that never answers.
	silent6 = netip.MustParseAddr("fd00:b6b::99")
)

// lab names the namespaces and the directory the parent test shares with
// the child it re-executes inside A.
type lab struct {
	NSA, NSB string // names for ip netns exec
	Dir      string // BIRD's config, socket, pid file and log
}

// childEnv carries the lab, as JSON, to the re-executed test binary.
const childEnv = "DUET_BGP_TEST_LAB"

// inLab runs the calling test or benchmark inside namespace A and reports
// whether the caller is that child, which should go on with the test body
// with the returned lab. In the parent it builds the lab, re-executes the
// test binary with `ip netns exec A` running only this test, relays its
// output and result, and returns false.
//
// Why a child process: GoBGP creates its listener on its Serve goroutine
// and dials from per-peer goroutines, none of which run on a thread the
// caller locked into A (tried: with Start called from a LockOSThread'ed
// goroutine inside A via ns.Do, the listener appeared in the host
// namespace and dials to an address that exists only in A failed with "no
// route to host"). Only a process whose every thread is in A keeps all of
// GoBGP's sockets there, which is also how duetd runs in a lab node.
func inLab(tb testing.TB, args ...string) (lab, bool) {
	tb.Helper()
	if s := os.Getenv(childEnv); s != "" {
		var l lab
		if err := json.Unmarshal([]byte(s), &l); err != nil {
			tb.Fatalf("%s: %v", childEnv, err)
		}
		return l, true
	}
	kerneltest.RequireRoot(tb)
	for _, bin := range []string{"bird", "birdc"} {
		if _, err := exec.LookPath(bin); err != nil {
			tb.Fatalf("%s not found: apt-get install -y bird2", bin)
		}
	}
	l := lab{
		NSA: kerneltest.NetNSName(kerneltest.NetNS(tb)),
		NSB: kerneltest.NetNSName(kerneltest.NetNS(tb)),
		Dir: tb.TempDir(),
	}
	// Registered after NetNS, so it runs before the namespaces go: a BIRD
	// the child left behind (it crashed, or timed out) is killed here.
	tb.Cleanup(func() { killLeftovers(tb, l.Dir) })
	run := func(args ...string) { kerneltest.Run(tb, "ip", args...) }
	run("-n", l.NSA, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", l.NSB)
	for _, side := range []struct {
		ns     string
		v6, v4 netip.Addr
	}{{l.NSA, a6, a4}, {l.NSB, b6, b4}} {
		run("-n", side.ns, "addr", "add", side.v6.String()+"/64", "dev", "eth0", "nodad")
		run("-n", side.ns, "addr", "add", side.v4.String()+"/24", "dev", "eth0")
		if side.ns == l.NSB {
			run("-n", side.ns, "addr", "add", b4md5.String()+"/24", "dev", "eth0")
		}
		run("-n", side.ns, "link", "set", "lo", "up")
		run("-n", side.ns, "link", "set", "eth0", "up")
	}

	env, _ := json.Marshal(l)
	self, err := os.Executable()
	if err != nil {
		tb.Fatal(err)
	}
	// The child's own -test.timeout fires first, so a hang ends with its
	// goroutine dump; the context is the backstop.
	timeout := 5 * time.Minute
	if d, ok := tb.(interface{ Deadline() (time.Time, bool) }); ok {
		if dl, ok := d.Deadline(); ok {
			timeout = max(time.Until(dl)-15*time.Second, 10*time.Second)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout+5*time.Second)
	defer cancel()
	argv := append([]string{"netns", "exec", l.NSA, self, "-test.v", "-test.count=1", "-test.timeout=" + timeout.String()}, args...)
	cmd := exec.CommandContext(ctx, "ip", argv...)
	cmd.Env = append(os.Environ(), childEnv+"="+string(env))
	out, err := cmd.CombinedOutput()
	tb.Logf("child in %s: ip %s\n%s", l.NSA, strings.Join(argv, " "), out)
	if err != nil {
		tb.Fatalf("child test in namespace A failed: %v", err)
	}
	return l, false
}

// killLeftovers kills any BIRD whose pid file is in dir.
func killLeftovers(tb testing.TB, dir string) {
	files, _ := filepath.Glob(filepath.Join(dir, "*.pid"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || pid <= 1 {
			continue
		}
		comm, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
		if strings.TrimSpace(string(comm)) == "bird" {
			tb.Logf("killing leftover bird %d", pid)
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// waitFor polls cond until it holds or the time is up; cond returns a
// description of what it saw, for the failure message.
func waitFor(tb testing.TB, d time.Duration, what string, cond func() (bool, string)) {
	tb.Helper()
	deadline := time.Now().Add(d)
	for {
		ok, saw := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("after %s, still not %s; last saw:\n%s", d, what, saw)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
