package kernel

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/google/nftables"
	"github.com/google/nftables/userdata"
	"golang.org/x/sys/unix"
)

// NFTSetElements is one batch of set-element changes, sent over netlink
// in one atomic transaction without running nft: the per-pod part of ADD
// and DEL, once the table exists. Every element of Checks (of table
// Table) must exist for the batch to be sent at all.
type NFTSetElements struct {
	Table    string
	Checks   []NFTElement
	Add      bool
	Elements []NFTElement
}

// NFTElement is one element, as raw key bytes. Family is "inet" or
// "bridge".
type NFTElement struct {
	Family string
	Set    string
	Key    []byte
	KeyEnd []byte
}

// NFTSetRef names one set of a table.
type NFTSetRef struct {
	Family string
	Set    string
}

func nftFamily(f string) (nftables.TableFamily, error) {
	switch f {
	case "inet":
		return nftables.TableFamilyINet, nil
	case "bridge":
		return nftables.TableFamilyBridge, nil
	}
	return 0, fmt.Errorf("nftables family %q not supported here", f)
}

// NFTApplyElements checks the markers and applies the batch. Any error
// (no table, no marker, an element already gone on delete) means nothing
// was changed, and the caller should use the nft scripts instead.
func NFTApplyElements(b NFTSetElements) error {
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("%w: %v", ErrNoNFTables, err)
	}
	have := map[NFTSetRef][]nftables.SetElement{}
	for _, m := range b.Checks {
		ref := NFTSetRef{m.Family, m.Set}
		els, ok := have[ref]
		if !ok {
			set, err := getSet(c, m.Family, b.Table, m.Set)
			if err != nil {
				return fmt.Errorf("table %s %s has no %s: %w", m.Family, b.Table, m.Set, err)
			}
			if els, err = c.GetSetElements(set); err != nil {
				return err
			}
			have[ref] = els
		}
		found := false
		for _, e := range els {
			found = found || bytes.Equal(bytes.TrimRight(e.Key, "\x00"), bytes.TrimRight(m.Key, "\x00"))
		}
		if !found {
			return fmt.Errorf("table %s %s is not marked as current (%s lacks %q)", m.Family, b.Table, m.Set, bytes.TrimRight(m.Key, "\x00"))
		}
	}
	sets := map[NFTSetRef]*nftables.Set{}
	bySet := map[NFTSetRef][]nftables.SetElement{}
	var order []NFTSetRef
	for _, e := range b.Elements {
		f, err := nftFamily(e.Family)
		if err != nil {
			return err
		}
		k := NFTSetRef{e.Family, e.Set}
		if sets[k] == nil {
			sets[k] = &nftables.Set{Table: &nftables.Table{Family: f, Name: b.Table}, Name: e.Set}
			order = append(order, k)
		}
		bySet[k] = append(bySet[k], nftables.SetElement{Key: e.Key, KeyEnd: e.KeyEnd})
	}
	if len(order) == 0 {
		return nil
	}
	for _, k := range order {
		if b.Add {
			err = c.SetAddElements(sets[k], bySet[k])
		} else {
			err = c.SetDeleteElements(sets[k], bySet[k])
		}
		if err != nil {
			return err
		}
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nftables batch: %w", err)
	}
	return nil
}

func getSet(c *nftables.Conn, fam string, table, name string) (*nftables.Set, error) {
	f, err := nftFamily(fam)
	if err != nil {
		return nil, err
	}
	return c.GetSetByName(&nftables.Table{Family: f, Name: table}, name)
}

// NFTListElements reads the elements of sets of table over netlink. A set
// (or table) that does not exist reads as empty: the caller asks for what
// any version of the table may hold.
func NFTListElements(table string, sets []NFTSetRef) ([]NFTElement, error) {
	c, err := nftables.New()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNoNFTables, err)
	}
	var out []NFTElement
	for _, ref := range sets {
		set, err := getSet(c, ref.Family, table, ref.Set)
		if err != nil {
			if errors.Is(err, unix.ENOENT) {
				continue
			}
			return nil, fmt.Errorf("reading set %s %s %s: %w", ref.Family, table, ref.Set, err)
		}
		els, err := c.GetSetElements(set)
		if err != nil {
			return nil, fmt.Errorf("reading set %s %s %s: %w", ref.Family, table, ref.Set, err)
		}
		for _, e := range els {
			if e.IntervalEnd {
				continue // rbtree end markers: the per-pod sets are concatenations, which have none
			}
			out = append(out, NFTElement{Family: ref.Family, Set: ref.Set, Key: e.Key, KeyEnd: e.KeyEnd})
		}
	}
	return out, nil
}

// NFTRuleComments reads the comments of chain's rules (of table, in
// family), in order, over netlink: what tells duet's rules apart, since
// nft prints a rule in its own canonical form. A rule without one reads
// as "".
func NFTRuleComments(family, table, chain string) ([]string, error) {
	f, err := nftFamily(family)
	if err != nil {
		return nil, err
	}
	c, err := nftables.New()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNoNFTables, err)
	}
	rules, err := c.GetRules(&nftables.Table{Family: f, Name: table}, &nftables.Chain{Name: chain})
	if err != nil {
		return nil, fmt.Errorf("reading chain %s %s %s: %w", family, table, chain, err)
	}
	out := make([]string, len(rules))
	for i, r := range rules {
		out[i], _ = userdata.GetString(r.UserData, userdata.TypeComment)
	}
	return out, nil
}
