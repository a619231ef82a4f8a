package routing

import (
	"errors"
	"fmt"

	"github.com/duetnet/duet/internal/kernel"
)

// Kernel is what the reconciler needs of a network namespace;
// *kernel.NS implements it.
type Kernel interface {
	NodeRoutes() ([]kernel.NodeRoute, error)
	ReplaceNodeRoute(kernel.NodeRoute) error
	DelNodeRoute(kernel.NodeRoute) error
}

var _ Kernel = (*kernel.NS)(nil)

// Diff returns what to replace and what to delete to turn have into want.
// Routes are keyed by destination: a changed next hop is one replace.
func Diff(have []kernel.NodeRoute, want []Route) (replace, del []kernel.NodeRoute) {
	wantBy := map[string]kernel.NodeRoute{}
	for _, r := range want {
		k := kernel.NodeRoute{Dst: r.Dst.Masked(), Via: r.Via, Blackhole: r.Blackhole, Dev: r.Dev}
		wantBy[k.Dst.String()] = k
	}
	haveBy := map[string]kernel.NodeRoute{}
	for _, r := range have {
		haveBy[r.Dst.String()] = r
		if _, ok := wantBy[r.Dst.String()]; !ok {
			del = append(del, r)
		}
	}
	for _, r := range want {
		k := wantBy[r.Dst.Masked().String()]
		if h, ok := haveBy[k.Dst.String()]; !ok || h != k {
			replace = append(replace, k)
			haveBy[k.Dst.String()] = k // a duplicate destination is replaced once
		}
	}
	return replace, del
}

// Reconcile makes the namespace's duet routes exactly want. It is safe to
// call again with the same state: the second call changes nothing. It
// returns how many routes it changed.
func Reconcile(k Kernel, want []Route) (int, error) { return reconcile(k, want, true) }

// ReconcileKeep is Reconcile without the deletions: for the moments
// after a restart when the desired state is known to be incomplete (BGP
// peers have not re-sent their routes yet), so that established flows
// keep their routes until the full state is back.
func ReconcileKeep(k Kernel, want []Route) (int, error) { return reconcile(k, want, false) }

func reconcile(k Kernel, want []Route, prune bool) (int, error) {
	have, err := k.NodeRoutes()
	if err != nil {
		return 0, err
	}
	replace, del := Diff(have, want)
	if !prune {
		del = nil
	}
	var errs []error
	for _, r := range del {
		if err := k.DelNodeRoute(r); err != nil {
			errs = append(errs, err)
		}
	}
	for _, r := range replace {
		if err := k.ReplaceNodeRoute(r); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", r, err))
		}
	}
	return len(replace) + len(del), errors.Join(errs...)
}
