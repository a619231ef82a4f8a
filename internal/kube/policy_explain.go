package kube

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/duetnet/duet/internal/policy"
	"github.com/duetnet/duet/internal/policy/netpol"
)

// PodPolicy is what the last compile made of one pod: the answer to
// duetctl policy show (duetd's GET /policy?pod=NS/NAME).
type PodPolicy struct {
	Pod string `json:"pod"` // "ns/name"
	// Node is the pod's spec.nodeName, "" if unknown or not scheduled.
	Node string `json:"node,omitempty"`
	// Here says the pod's rules are in this node's table: it runs here
	// and not on the host's network.
	Here bool `json:"here"`
	// Rules are its rules, nil when policy does not apply to it (not
	// known, on the host's network, no IP yet; Explain says why).
	Rules *policy.PodRules `json:"rules,omitempty"`
	// Explain is policy.Result.Explain's text: what is allowed in and
	// out, by which policy and rule, family by family.
	Explain string `json:"explain"`
	// Problems are the parts of policies of the pod's namespace that
	// duet cannot render (each rule concerned allows nothing).
	Problems []string `json:"problems,omitempty"`
	// Compiled is when the answer was computed; SyncError is why the
	// node's table did not take it, if it did not.
	Compiled  time.Time `json:"compiled"`
	SyncError string    `json:"syncError,omitempty"`
}

// ErrNotSynced is Pod's answer before the first compile.
var ErrNotSynced = errors.New("not synced yet: duetd is waiting for the first list of NetworkPolicies, Pods and Namespaces from the Kubernetes API (RBAC: list, watch on each)")

// Pod answers for pod ns/name from the last compile.
func (p *Policies) Pod(ns, name string) (PodPolicy, error) {
	p.mu.Lock()
	c := p.last
	p.mu.Unlock()
	if c == nil {
		return PodPolicy{}, ErrNotSynced
	}
	key := ns + "/" + name
	res, at := c.res, c.at
	if !c.local[key] {
		// The sync compiles this node's pods only; another pod's rules
		// are compiled now, from the same caches.
		var err error
		if res, err = p.compileOne(ns, name); err != nil {
			return PodPolicy{}, err
		}
		at = time.Now()
	}
	pp := PodPolicy{Pod: key, Here: c.local[key], Explain: res.Explain(ns, name), Compiled: at}
	if r, ok := res.Pod(ns, name); ok {
		rules := *r
		pp.Rules = &rules
	}
	if pod, err := p.pods.Pods(ns).Get(name); err == nil {
		pp.Node = pod.Spec.NodeName
	}
	for _, pr := range c.problems {
		if strings.HasPrefix(pr.Policy, ns+"/") {
			pp.Problems = append(pp.Problems, pr.Error())
		}
	}
	if c.syncErr != nil {
		pp.SyncError = c.syncErr.Error()
	}
	return pp, nil
}

// SyncError is why the last sync did not reach the kernel, nil when it
// did or before the first one: duetd's readiness.
func (p *Policies) SyncError() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.last == nil {
		return nil
	}
	return p.last.syncErr
}

// compileOne compiles pod ns/name's rules from the informers' caches.
func (p *Policies) compileOne(ns, name string) (policy.Result, error) {
	pols, pods, nss, err := p.list()
	if err != nil {
		return policy.Result{}, err
	}
	res, _ := netpol.CompileFor(pols, pods, nss, func(n, m string) bool { return n == ns && m == name })
	return res, nil
}

// String is the text duetctl prints: the explanation, then where it is
// enforced, the problems and the compile's age.
func (pp PodPolicy) String() string {
	var b strings.Builder
	b.WriteString(pp.Explain)
	switch {
	case pp.Here:
		fmt.Fprintf(&b, "enforced here, on node %s (table inet duet-policy)\n", pp.Node)
	case pp.Node != "" && pp.Rules != nil:
		fmt.Fprintf(&b, "runs on node %s: enforced there, by its duetd (ask it for what its table holds)\n", pp.Node)
	}
	for _, pr := range pp.Problems {
		fmt.Fprintf(&b, "problem: %s: that rule allows nothing\n", pr)
	}
	fmt.Fprintf(&b, "compiled %s ago\n", time.Since(pp.Compiled).Round(time.Millisecond))
	if pp.SyncError != "" {
		fmt.Fprintf(&b, "the last sync failed, the table may be older: %s\n", pp.SyncError)
	}
	return b.String()
}
