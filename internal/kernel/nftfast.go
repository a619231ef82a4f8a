package kernel

import (
	"bytes"
	"fmt"

	"github.com/google/nftables"
	"sigs.k8s.io/knftables"
)

// NFTSetElements is one batch of set-element changes, sent over netlink
// in one atomic transaction without running nft: the per-pod part of ADD
// and DEL, once the table exists. Check names an element that must be in
// CheckSet (of table Table in Family) for the batch to be sent at all.
type NFTSetElements struct {
	Family   knftables.Family
	Table    string
	CheckSet string
	CheckKey []byte
	Add      bool
	Elements []NFTElement
}

// NFTElement is one element, as raw key bytes.
type NFTElement struct {
	Family knftables.Family
	Set    string
	Key    []byte
	KeyEnd []byte
}

func nftFamily(f knftables.Family) (nftables.TableFamily, error) {
	switch f {
	case knftables.InetFamily:
		return nftables.TableFamilyINet, nil
	case knftables.BridgeFamily:
		return nftables.TableFamilyBridge, nil
	}
	return 0, fmt.Errorf("nftables family %q not supported here", f)
}

// NFTApplyElements checks the marker and applies the batch. Any error
// (no table, no marker, an element already gone on delete) means nothing
// was changed, and the caller should use the nft scripts instead.
func NFTApplyElements(b NFTSetElements) error {
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("%w: %v", ErrNoNFTables, err)
	}
	fam, err := nftFamily(b.Family)
	if err != nil {
		return err
	}
	table := &nftables.Table{Family: fam, Name: b.Table}
	marker, err := c.GetSetByName(table, b.CheckSet)
	if err != nil {
		return fmt.Errorf("table %s %s has no %s: %w", b.Family, b.Table, b.CheckSet, err)
	}
	els, err := c.GetSetElements(marker)
	if err != nil {
		return err
	}
	found := false
	for _, e := range els {
		found = found || bytes.Equal(bytes.TrimRight(e.Key, "\x00"), bytes.TrimRight(b.CheckKey, "\x00"))
	}
	if !found {
		return fmt.Errorf("table %s %s is not marked as current", b.Family, b.Table)
	}
	sets := map[string]*nftables.Set{}
	bySet := map[string][]nftables.SetElement{}
	var order []string
	for _, e := range b.Elements {
		f, err := nftFamily(e.Family)
		if err != nil {
			return err
		}
		k := string(e.Family) + "/" + e.Set
		if sets[k] == nil {
			sets[k] = &nftables.Set{Table: &nftables.Table{Family: f, Name: b.Table}, Name: e.Set}
			order = append(order, k)
		}
		bySet[k] = append(bySet[k], nftables.SetElement{Key: e.Key, KeyEnd: e.KeyEnd})
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
