package bench

import (
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"testing"
	"time"
)

// BenchmarkStartup measures what every CNI call pays before any work: a
// plugin process answering VERSION, for duet and duet-ipam (which link the
// etcd JSON-gateway client, not etcd's gRPC client) beside the reference
// bridge and host-local plugins, interleaved in one run. Reports p50 per
// plugin; asserts nothing. Needs no root.
func BenchmarkStartup(b *testing.B) {
	bins := b.TempDir()
	buildShipped(b, bins, "github.com/duetnet/duet/cmd/duet", "github.com/duetnet/duet/cmd/duet-ipam")
	paths := map[string]string{"duet": filepath.Join(bins, "duet"), "duet-ipam": filepath.Join(bins, "duet-ipam")}
	for _, ref := range []string{"bridge", "host-local"} {
		p := filepath.Join(refPluginDir, ref)
		if _, err := os.Stat(p); err != nil {
			b.Fatalf("reference plugin %s missing (apt-get install containernetworking-plugins): %v", ref, err)
		}
		paths[ref] = p
	}
	names := []string{"duet", "duet-ipam", "bridge", "host-local"}
	const runs = 200
	lat := map[string][]time.Duration{}
	b.ResetTimer()
	for i := 0; i < runs*b.N; i++ {
		for _, name := range names {
			cmd := exec.Command(paths[name])
			cmd.Env = []string{"CNI_COMMAND=VERSION"}
			start := time.Now()
			if out, err := cmd.Output(); err != nil {
				b.Fatalf("%s VERSION: %v: %s", name, err, out)
			}
			lat[name] = append(lat[name], time.Since(start))
		}
	}
	for _, name := range names {
		l := lat[name]
		sort.Slice(l, func(i, j int) bool { return l[i] < l[j] })
		p50, p90 := l[len(l)/2], l[len(l)*9/10]
		b.ReportMetric(float64(p50.Microseconds())/1000, name+"-p50-ms")
		b.Logf("VERSION start-up %-10s p50 %6.2f ms  p90 %6.2f ms (%d runs, interleaved)", name, float64(p50.Microseconds())/1000, float64(p90.Microseconds())/1000, len(l))
	}
}
