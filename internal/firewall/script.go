package firewall

import (
	"fmt"
	"strings"
)

// Family is the nftables family of one of duet's tables.
type Family string

// The families of duet's two tables: inet for routed pods and NAT,
// bridge for bridge-mode pods' frames.
const (
	Inet   Family = "inet"
	Bridge Family = "bridge"
)

// tx is an nft script being built: one atomic `nft -f` transaction over
// duet's two tables. The plugin renders nft's syntax here instead of
// through knftables (which duetd uses for its own tables): knftables
// compiles nine regular expressions when its package initialises, and
// the plugin, a new process for every ADD and DEL, paid about 80 page
// faults and 1 ms for them on every start (2026-12-07, this VM), for
// parsing it never does. What this renders is a small fixed subset (add,
// flush and delete of tables, chains, sets, rules and elements) in
// exactly knftables' form; the tests check both render the same text.
type tx struct{ ops []op }

// verb is the nft command of an op.
type verb string

const (
	verbAdd    verb = "add"
	verbFlush  verb = "flush"
	verbDelete verb = "delete"
)

// op is one command on one object.
type op struct {
	verb verb
	obj  object
}

// object is a table, chain, set, rule or element of one of duet's tables
// (all named Table). Fields that do not apply to its kind are empty.
type object struct {
	kind string // "table", "chain", "set", "rule" or "element"
	fam  Family
	// name is the chain's or set's name; for a rule the chain it is in,
	// for an element its set.
	name string
	// hook, chainType and priority make a chain a base chain.
	hook, chainType string
	priority        int
	// setType or typeOf declare a set's key; interval marks an interval set.
	setType, typeOf string
	interval        bool
	rule            rule
	key             []string // an element's key components
}

func (t *tx) add(o object)   { t.ops = append(t.ops, op{verbAdd, o}) }
func (t *tx) flush(o object) { t.ops = append(t.ops, op{verbFlush, o}) }
func (t *tx) del(o object)   { t.ops = append(t.ops, op{verbDelete, o}) }

func tableObj(fam Family) object { return object{kind: "table", fam: fam} }

func elementObj(fam Family, set string, key ...string) object {
	return object{kind: "element", fam: fam, name: set, key: key}
}

// String is the script, one command per line.
func (t *tx) String() string {
	var b strings.Builder
	for _, o := range t.ops {
		o.obj.write(&b, o.verb)
	}
	return b.String()
}

func (o object) write(b *strings.Builder, v verb) {
	fmt.Fprintf(b, "%s %s %s %s", v, o.kind, o.fam, Table)
	switch o.kind {
	case "chain":
		fmt.Fprintf(b, " %s", o.name)
		if v == verbAdd && o.hook != "" {
			fmt.Fprintf(b, " { type %s hook %s priority %d ; }", o.chainType, o.hook, o.priority)
		}
	case "set":
		fmt.Fprintf(b, " %s", o.name)
		if v == verbAdd {
			if o.setType != "" {
				fmt.Fprintf(b, " { type %s ;", o.setType)
			} else {
				fmt.Fprintf(b, " { typeof %s ;", o.typeOf)
			}
			if o.interval {
				b.WriteString(" flags interval ;")
			}
			b.WriteString(" }")
		}
	case "rule":
		fmt.Fprintf(b, " %s", o.name)
		if v == verbAdd {
			fmt.Fprintf(b, " %s comment %q", o.rule.expr, o.rule.comment)
		}
	case "element":
		fmt.Fprintf(b, " %s { %s }", o.name, strings.Join(o.key, " . "))
	}
	b.WriteByte('\n')
}
