//go:build kubelab

// Privileged; needs the upstream build (make kube). Run as root with
//
//	make bench-kube      # go test -tags kubelab -run XXX -bench . -benchtime 1x ./bench/kube/
//
// BenchmarkKubePodReady brings the kube lab up twice in one run, once
// with duet as the CNI and once with the reference bridge + host-local
// plugins (direct routes, no masquerade), and under the real kubelet
// creates the same 100 pods on node2 in waves of 10. Per pod it measures
// creation until Ready and until the first TCP answer from node1 (another
// node), and prints p50/p99 of both CNIs side by side, with the time of
// each lab up and duetd's memory with the pods in place.
package kube_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/duetnet/duet/internal/image"
	"github.com/duetnet/duet/internal/kernel/kerneltest"
	"github.com/duetnet/duet/internal/kubelab"
	"github.com/duetnet/duet/internal/lab"
)

const (
	pods = 100
	wave = 10
	ns   = "bench"
)

type figures struct {
	up             time.Duration
	ready, answer  []time.Duration
	duetdRSS       int64 // KiB, duet only
	duetdRSSBefore int64
}

func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

func BenchmarkKubePodReady(b *testing.B) {
	kerneltest.RequireRoot(b)
	root := repoRoot()
	res := map[string]*figures{}
	for _, cni := range []string{"duet", "bridge"} {
		f, err := runOnce(b, root, cni)
		if err != nil {
			b.Fatalf("%s: %v", cni, err)
		}
		res[cni] = f
	}
	d, r := res["duet"], res["bridge"]
	fmt.Printf("\nkube lab, %d pods on node2 (waves of %d), under the kubelet; reference: bridge + host-local in the same lab, same run\n", pods, wave)
	fmt.Printf("%-44s %14s %14s\n", "", "duet", "bridge+h-l")
	row := func(name string, a, b []time.Duration, q float64) {
		fmt.Printf("%-44s %11.0f ms %11.0f ms\n", name, ms(pct(a, q)), ms(pct(b, q)))
	}
	row("created -> Ready, p50", d.ready, r.ready, 50)
	row("created -> Ready, p99", d.ready, r.ready, 99)
	row("created -> first answer from node1, p50", d.answer, r.answer, 50)
	row("created -> first answer from node1, p99", d.answer, r.answer, 99)
	fmt.Printf("%-44s %12.1f s %12.1f s\n", "lab up --kubernetes (upstream build cached)", d.up.Seconds(), r.up.Seconds())
	fmt.Printf("%-44s %10d KiB (%d KiB before the pods)\n", "duetd RSS on node2 with the pods", d.duetdRSS, d.duetdRSSBefore)
	b.ReportMetric(ms(pct(d.ready, 50)), "duet-ready-p50-ms")
	b.ReportMetric(ms(pct(r.ready, 50)), "bridge-ready-p50-ms")
}

func runOnce(b *testing.B, root, cni string) (*figures, error) {
	datadir := b.TempDir()
	o := kubelab.Options{Nodes: 2, Family: "dual", Routing: "direct", ProxyMode: "nftables", CNI: cni}
	var log strings.Builder
	defer func() {
		if s, ok, _ := lab.Load(datadir); ok {
			_ = kubelab.Down(s, &log)
		}
		_ = lab.Down(datadir, &log)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	t0 := time.Now()
	s, err := kubelab.Up(ctx, o, kubelab.Sources{DuetBin: filepath.Join(root, "bin"), KubeSrc: filepath.Join(root, "hack", "kube")}, datadir, &log)
	if err != nil {
		return nil, fmt.Errorf("%v\n%s", err, log.String())
	}
	f := &figures{up: time.Since(t0)}
	cfg, err := clientcmd.BuildConfigFromFlags("", s.Kubernetes.Kubeconfig)
	if err != nil {
		return nil, err
	}
	cfg.QPS, cfg.Burst = 200, 400
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	if cni == "duet" {
		f.duetdRSSBefore = duetdRSS("node2")
	}
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		return nil, err
	}
	dial := lab.NetnsDial("/run/netns/" + s.Nodes[0].NetNS)
	for w := 0; w < pods/wave; w++ {
		created := map[string]time.Time{}
		for i := 0; i < wave; i++ {
			name := fmt.Sprintf("p%03d", w*wave+i)
			created[name] = time.Now()
			if _, err := cs.CoreV1().Pods(ns).Create(ctx, pod(name, s.Nodes[1].Name), metav1.CreateOptions{}); err != nil {
				return nil, err
			}
		}
		ready, answered := map[string]bool{}, map[string]bool{}
		deadline := time.Now().Add(3 * time.Minute)
		for len(answered) < wave || len(ready) < wave {
			if time.Now().After(deadline) {
				return nil, fmt.Errorf("wave %d: %d of %d ready, %d answered after 3 minutes", w, len(ready), wave, len(answered))
			}
			list, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
			if err != nil {
				return nil, err
			}
			now := time.Now()
			for _, p := range list.Items {
				start, mine := created[p.Name]
				if !mine {
					continue
				}
				if !ready[p.Name] && podReady(&p) {
					ready[p.Name] = true
					f.ready = append(f.ready, now.Sub(start))
				}
				if !answered[p.Name] && p.Status.PodIP != "" {
					if answers(ctx, dial, p.Status.PodIP) {
						answered[p.Name] = true
						f.answer = append(f.answer, time.Since(start))
					}
				}
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	if cni == "duet" {
		f.duetdRSS = duetdRSS("node2")
	}
	return f, nil
}

func pod(name, node string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app": "bench"}},
		Spec: corev1.PodSpec{
			NodeName:                      node,
			TerminationGracePeriodSeconds: new(int64),
			Containers: []corev1.Container{{
				Name: "netexec", Image: image.AgnhostRef, ImagePullPolicy: corev1.PullNever,
				Args: []string{"netexec", "--http-port=8080"},
				ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(8080)}},
					PeriodSeconds: 1},
			}},
		},
	}
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
			return true
		}
	}
	return false
}

func answers(ctx context.Context, dial func(context.Context, string, string) (net.Conn, error), ip string) bool {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return false
	}
	c, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	conn, err := dial(c, "tcp", netip.AddrPortFrom(a, 8080).String())
	if err != nil {
		return false
	}
	conn.Close()
	return true
}

// duetdRSS is the resident memory of the duetd serving node (found by
// its command line and its NODE_NAME), in KiB.
func duetdRSS(node string) int64 {
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range procs {
		cmd, _ := os.ReadFile(filepath.Join(p, "cmdline"))
		if !strings.Contains(string(cmd), "duetd") || !strings.Contains(string(cmd), "--kubernetes") {
			continue
		}
		env, _ := os.ReadFile(filepath.Join(p, "environ"))
		if !slices.Contains(strings.Split(string(env), "\x00"), "NODE_NAME="+node) {
			continue
		}
		status, _ := os.ReadFile(filepath.Join(p, "status"))
		for _, l := range strings.Split(string(status), "\n") {
			if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
				n, _ := strconv.ParseInt(f[1], 10, 64)
				return n
			}
		}
	}
	return -1
}

func pct(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(q / 100 * float64(len(s)-1))
	return s[i]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
