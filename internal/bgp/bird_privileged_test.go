package bgp_test

import (
	"bufio"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const md5Password = "duet-md5-secret"

// bird is a BIRD 2 daemon in namespace B, driven through its control
// socket (birdc needs no namespace: the socket is a file).
type bird struct {
	sock string
}

// birdConf is BIRD's side of the lab: AS 65002 with static blackhole
// routes to export, a session "a6" to A over IPv6 carrying both families
// (the IPv4 channel gets B's IPv4 address as next hop, so neither side
// needs extended next hop), and a session "a4" to A over IPv4 for the
// wrong-AS case, and a session "pw" from B's second IPv4 address with
// a TCP MD5 password that only has to come up. Short timers keep the test fast; graceful restart
// "aware" (helper) is BIRD's default.
func birdConf(dir string, static []netip.Prefix) string {
	var st4, st6 strings.Builder
	for _, p := range static {
		b := &st6
		if p.Addr().Is4() {
			b = &st4
		}
		fmt.Fprintf(b, "\troute %s blackhole;\n", p)
	}
	return fmt.Sprintf(`log "%s/bird.log" all;
router id %s;
protocol device {}
protocol static static6 { ipv6;
%s}
protocol static static4 { ipv4;
%s}
template bgp node {
	local as 65002;
	hold time 9;
	connect delay time 1;
	connect retry time 2;
	error wait time 1, 2;
}
protocol bgp a6 from node {
	local %s as 65002;
	neighbor %s as 65001;
	ipv6 { import all; export all; };
	ipv4 { import all; export all; next hop address %s; };
}
protocol bgp a4 from node {
	local %s as 65002;
	neighbor %s as 65001;
	ipv4 { import all; export all; };
	ipv6 { import all; export all; next hop address %s; };
}
protocol bgp pw from node {
	local %s as 65002;
	neighbor %s as 65001;
	password "%s";
	ipv4 { import none; export none; };
	ipv6 { import none; export none; next hop address %s; };
}
`, dir, b4, st6.String(), st4.String(), b6, a6, b4, b4, a4, b6, b4md5, a4, md5Password, b6)
}

// startBIRD runs BIRD in the foreground inside l.NSB with conf, and kills
// it when the test ends. The pid file lets the parent test kill it too if
// this process dies first.
func startBIRD(tb testing.TB, l lab, conf string) *bird {
	tb.Helper()
	confPath := filepath.Join(l.Dir, "bird.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		tb.Fatal(err)
	}
	b := &bird{sock: filepath.Join(l.Dir, "bird.ctl")}
	cmd := exec.Command("ip", "netns", "exec", l.NSB, "bird", "-f", "-c", confPath, "-s", b.sock, "-P", filepath.Join(l.Dir, "bird.pid"))
	out := &strings.Builder{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		tb.Fatalf("start bird: %v", err)
	}
	exited := make(chan struct{}) // closed when BIRD has exited
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	tb.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
		if log, err := os.ReadFile(filepath.Join(l.Dir, "bird.log")); err == nil && tb.Failed() {
			tb.Logf("bird.log:\n%s", log)
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := b.try("show", "status"); err == nil {
			return b
		}
		select {
		case <-exited:
			tb.Fatalf("bird exited: %v: %s", waitErr, out)
		default:
		}
		if time.Now().After(deadline) {
			tb.Fatalf("bird did not open %s: %s", b.sock, out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (b *bird) try(args ...string) (string, error) {
	out, err := exec.Command("birdc", append([]string{"-s", b.sock}, args...)...).CombinedOutput()
	return string(out), err
}

// run runs a birdc command, failing the test if birdc fails.
func (b *bird) run(tb testing.TB, args ...string) string {
	tb.Helper()
	out, err := b.try(args...)
	if err != nil {
		tb.Fatalf("birdc %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return out
}

// routes returns what BIRD learned from protocol proto: destination to
// the BGP next hop A gave.
//
//	birdc show route all protocol a6
func (b *bird) routes(tb testing.TB, proto string) map[netip.Prefix]netip.Addr {
	tb.Helper()
	out := b.run(tb, "show", "route", "all", "protocol", proto)
	got := map[netip.Prefix]netip.Addr{}
	var cur netip.Prefix
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if f := strings.Fields(line); len(f) > 0 && !strings.HasPrefix(line, " ") && !strings.HasPrefix(line, "\t") {
			if p, err := netip.ParsePrefix(f[0]); err == nil {
				cur = p
			}
			continue
		}
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "BGP.next_hop:"); ok && cur.IsValid() {
			// IPv6 may list a link-local second next hop; the first is global.
			if f := strings.Fields(v); len(f) > 0 {
				if nh, err := netip.ParseAddr(f[0]); err == nil {
					got[cur] = nh
				}
			}
		}
	}
	return got
}

// protocol returns `birdc show protocols all name`.
func (b *bird) protocol(tb testing.TB, name string) string {
	return b.run(tb, "show", "protocols", "all", name)
}
