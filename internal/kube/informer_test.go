package kube

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

func waitSignal(t *testing.T, c <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-c:
	case <-time.After(5 * time.Second):
		t.Fatalf("no change signal after %s", what)
	}
}

func noSignal(t *testing.T, c <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-c:
		t.Fatalf("a change signal after %s", what)
	case <-time.After(100 * time.Millisecond):
	}
}

// TestNodesInformer: through client-go's fake clientset, the view follows
// Node objects being added, changed and deleted, signalling each relevant
// change, and the cache holds no managedFields.
func TestNodesInformer(t *testing.T) {
	n1 := node("node1", []string{"fd00:10:244:1::/64", "10.244.1.0/24"}, "fd00:ff::1", "10.255.0.1")
	n1.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "kubelet"}}
	n1.Status.Images = []corev1.ContainerImage{{Names: []string{"registry.k8s.io/pause:3.10"}}}
	client := fake.NewClientset(n1)
	nodes, err := NewNodes(client, &API{Host: "https://[fd00::1]:6443"}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := nodes.Nodes(); err == nil || !strings.Contains(err.Error(), "waiting for the Kubernetes API at https://[fd00::1]:6443") {
		t.Errorf("before start: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	nodes.Start(ctx)
	t.Cleanup(func() { cancel(); nodes.Shutdown(5 * time.Second) })
	if !nodes.WaitForSync(ctx, 5*time.Second) {
		t.Fatal("not synced")
	}
	waitSignal(t, nodes.Changed(), "start")
	view := NewCluster(nodes, "node1", dual, slog.New(slog.DiscardHandler))
	self, all, blocks, err := view.View()
	if err != nil {
		t.Fatal(err)
	}
	if self.Name != "node1" || len(all) != 1 || len(blocks) != 2 || blocks[0].CIDR.String() != "fd00:10:244:1::/64" {
		t.Errorf("one node: %+v %+v %+v", self, all, blocks)
	}
	objs, _ := nodes.Nodes()
	if len(objs[0].ManagedFields) != 0 || len(objs[0].Status.Images) != 0 {
		t.Errorf("the cache keeps managedFields or images: %+v", objs[0].ObjectMeta)
	}

	n2 := node("node2", []string{"fd00:10:244:2::/64", "10.244.2.0/24"}, "fd00:ff::2", "10.255.0.2")
	if _, err := client.CoreV1().Nodes().Create(ctx, n2, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitSignal(t, nodes.Changed(), "a node joined")
	if _, all, blocks, _ = view.View(); len(all) != 2 || len(blocks) != 4 {
		t.Errorf("two nodes: %+v %+v", all, blocks)
	}

	// The kubelet's status rewrites do not wake the agent.
	hb := n2.DeepCopy()
	hb.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}
	if _, err := client.CoreV1().Nodes().UpdateStatus(ctx, hb, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	noSignal(t, nodes.Changed(), "a status heartbeat")

	if err := client.CoreV1().Nodes().Delete(ctx, "node2", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitSignal(t, nodes.Changed(), "a node was deleted")
	if _, all, blocks, _ = view.View(); len(all) != 1 || len(blocks) != 2 {
		t.Errorf("node2 deleted: %+v %+v", all, blocks)
	}

	// This node's own ranges going away is refused, not served half.
	bare := n1.DeepCopy()
	bare.Spec.PodCIDRs, bare.Spec.PodCIDR = nil, ""
	if _, err := client.CoreV1().Nodes().Update(ctx, bare, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitSignal(t, nodes.Changed(), "own ranges removed")
	if _, _, _, err := view.View(); err == nil || !strings.Contains(err.Error(), "--allocate-node-cidrs") {
		t.Errorf("own node without ranges: %v", err)
	}
}

// TestSlimTombstone: the transform passes a tombstone through.
func TestSlimTombstone(t *testing.T) {
	type tomb struct{ Key string }
	if got, err := slim(tomb{"k"}); err != nil || got.(tomb).Key != "k" {
		t.Errorf("%v %v", got, err)
	}
}

// TestNodesUnreachable: while the API refuses the connection or the
// request, the reason is in the message (client-go's reflector retries a
// refused connection without telling its error handler).
func TestNodesUnreachable(t *testing.T) {
	forbidden := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, `{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"Forbidden","code":403}`, http.StatusForbidden)
	}))
	defer forbidden.Close()
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()
	for _, tc := range []struct {
		url, want string
	}{{forbidden.URL, "403"}, {closed.URL, "connection refused"}} {
		kc := filepath.Join(t.TempDir(), "kubeconfig")
		if err := os.WriteFile(kc, []byte("apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: \""+tc.url+"\"}}]\nusers: [{name: u, user: {}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		client, api, err := Client(kc)
		if err != nil {
			t.Fatal(err)
		}
		nodes, err := NewNodes(client, api, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		nodes.Start(ctx)
		var msg string
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			_, err := nodes.Nodes()
			if msg = err.Error(); strings.Contains(msg, tc.want) {
				break
			}
		}
		cancel()
		start := time.Now()
		nodes.Shutdown(time.Second)
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("%s: Shutdown took %s", tc.url, d)
		}
		if !strings.Contains(msg, tc.want) || !strings.Contains(msg, tc.url) || !strings.Contains(msg, "keeps retrying") {
			t.Errorf("%s: %q, want the server and %q", tc.url, msg, tc.want)
		}
	}
	if _, _, err := Client(filepath.Join(t.TempDir(), "missing")); err == nil || !strings.HasPrefix(err.Error(), "--kubeconfig") {
		t.Errorf("missing kubeconfig: %v", err)
	}
}
