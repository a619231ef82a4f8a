package policynft

import (
	"context"
	"fmt"

	"sigs.k8s.io/knftables"

	"github.com/duetnet/duet/internal/policy"
)

// NFT is what the policy syncer needs of nftables, bound to table
// inet duet-policy: knftables.New(knftables.InetFamily, Table) in
// production, knftables.NewFake with the same arguments in tests.
type NFT interface {
	NewTransaction() *knftables.Transaction
	Run(ctx context.Context, tx *knftables.Transaction) error
	List(ctx context.Context, objectType string) ([]string, error)
}

var _ NFT = knftables.Interface(nil)

// Syncer makes table inet duet-policy match the rules of a set of
// pods. Each Sync is one atomic transaction; the first (and the first
// after a failure, or after Resync) rewrites the whole table, repairing
// anything edited by hand; later ones change only the set and map
// elements, chains and sets that differ from the last applied state. A
// Sync with the state already applied runs nothing. It is not safe for
// concurrent use: one coalescing runner calls it.
type Syncer struct {
	nft     NFT
	applied *polState // nil: the next sync rewrites the table
}

// NewSyncer returns a syncer that writes through nft. It does
// nothing until Sync.
func NewSyncer(nft NFT) *Syncer { return &Syncer{nft: nft} }

// Resync makes the next Sync rewrite the whole table.
func (s *Syncer) Resync() { s.applied = nil }

// Sync makes the table hold the rules of pods: this node's pods, as
// policy.Result lists them (pods no policy isolates need not be left
// out, they get nothing).
func (s *Syncer) Sync(ctx context.Context, pods []policy.PodRules) error {
	want := renderPolicy(pods)
	tx := s.nft.NewTransaction()
	if s.applied == nil {
		if err := s.rewrite(ctx, tx, want); err != nil {
			return err
		}
	} else {
		polDiff(tx, s.applied, want)
	}
	if tx.NumOperations() == 0 {
		return nil
	}
	if err := s.nft.Run(ctx, tx); err != nil {
		s.applied = nil
		return fmt.Errorf("table inet %s: %w", Table, err)
	}
	s.applied = want
	return nil
}

// rewrite fills tx with the whole table: every existing chain, set and
// map is flushed and what is wanted written again; what is no longer
// wanted is deleted.
func (s *Syncer) rewrite(ctx context.Context, tx *knftables.Transaction, want *polState) error {
	have := map[string][]string{}
	for _, typ := range []string{"chains", "sets", "maps"} {
		names, err := s.nft.List(ctx, typ)
		if err != nil && !knftables.IsNotFound(err) {
			return fmt.Errorf("listing %s of table inet %s: %w", typ, Table, err)
		}
		have[typ] = names
	}
	tx.Add(&knftables.Table{Comment: knftables.PtrTo("duet: NetworkPolicy")})
	for _, c := range have["chains"] {
		tx.Flush(&knftables.Chain{Name: c})
	}
	for _, set := range have["sets"] {
		tx.Flush(&knftables.Set{Name: set})
	}
	for _, m := range have["maps"] {
		tx.Flush(&knftables.Map{Name: m})
	}
	polBase(tx)
	for _, c := range sortedKeys(want.chains) {
		addPodChain(tx, c, want.chains[c], want.dirs[c])
	}
	polElements(tx, &polState{}, want) // every element
	static := map[string]bool{polForward: true, polICMPv6: true}
	for _, c := range have["chains"] {
		if _, ok := want.chains[c]; !ok && !static[c] {
			tx.Delete(&knftables.Chain{Name: c})
		}
	}
	for _, set := range have["sets"] {
		if _, ok := want.sets[set]; !ok {
			tx.Delete(&knftables.Set{Name: set})
		}
	}
	for _, m := range have["maps"] {
		if _, ok := want.maps[m]; !ok {
			tx.Delete(&knftables.Map{Name: m})
		}
	}
	return nil
}

// polDiff fills tx with what turns have into want. The order matters to
// the kernel: chains and sets exist before anything refers to them, a
// set loses elements before it gains overlapping ones, and a chain is
// flushed (its rules were the last users of its sets) and deleted only
// after the map elements that led to it.
func polDiff(tx *knftables.Transaction, have, want *polState) {
	for _, c := range sortedKeys(want.chains) {
		if _, ok := have.chains[c]; !ok {
			addPodChain(tx, c, want.chains[c], want.dirs[c])
		}
	}
	polElements(tx, have, want)
	for _, c := range sortedKeys(have.chains) {
		if _, ok := want.chains[c]; !ok {
			tx.Flush(&knftables.Chain{Name: c})
			tx.Delete(&knftables.Chain{Name: c})
			for _, suffix := range sortedKeys(polSetTypes) {
				tx.Delete(&knftables.Set{Name: c + suffix})
			}
		}
	}
}

// polElements fills tx with the set and map elements that turn have into
// want, deletions first.
func polElements(tx *knftables.Transaction, have, want *polState) {
	for _, set := range sortedKeys(want.sets) {
		old, els := have.sets[set], want.sets[set]
		for _, k := range sortedKeys(old) {
			if _, ok := els[k]; !ok {
				tx.Delete(&knftables.Element{Set: set, Key: old[k]})
			}
		}
		for _, k := range sortedKeys(els) {
			if _, ok := old[k]; !ok {
				tx.Add(&knftables.Element{Set: set, Key: els[k]})
			}
		}
	}
	for _, m := range sortedKeys(want.maps) {
		old, els := have.maps[m], want.maps[m]
		for _, k := range sortedKeys(old) {
			if v, ok := els[k]; !ok || v != old[k] {
				tx.Delete(&knftables.Element{Map: m, Key: []string{k}, Value: []string{old[k]}})
			}
		}
		for _, k := range sortedKeys(els) {
			if v, ok := old[k]; !ok || v != els[k] {
				tx.Add(&knftables.Element{Map: m, Key: []string{k}, Value: []string{els[k]}})
			}
		}
	}
}
