package doctor

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Every document, JSON or YAML, becomes a *yaml.Node tree so that every
// check can report a line. The helpers below read such trees leniently: a
// missing key or a value of the wrong shape reads as absent.

// get follows keys through mappings; it returns nil when a key is missing
// or a step is not a mapping.
func get(n *yaml.Node, keys ...string) *yaml.Node {
	n = deref(n)
	for _, k := range keys {
		if n == nil || n.Kind != yaml.MappingNode {
			return nil
		}
		var next *yaml.Node
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == k {
				next = deref(n.Content[i+1])
			}
		}
		n = next
	}
	return n
}

// deref skips document and alias nodes.
func deref(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && i < 16; i++ {
		switch n.Kind {
		case yaml.DocumentNode:
			if len(n.Content) == 0 {
				return nil
			}
			n = n.Content[0]
		case yaml.AliasNode:
			n = n.Alias
		default:
			return n
		}
	}
	return n
}

// str is a scalar's text; ok is false for a missing node or a non-scalar.
func str(n *yaml.Node) (string, bool) {
	n = deref(n)
	if n == nil || n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		return "", false
	}
	return n.Value, true
}

// boolean reads true/false, also written as a string ("true"), as Calico
// and CNI configurations often do; set is false when absent or not a bool.
func boolean(n *yaml.Node) (v, set bool) {
	s, ok := str(n)
	if !ok {
		return false, false
	}
	switch strings.ToLower(s) {
	case "true", "yes", "on":
		return true, true
	case "false", "no", "off":
		return false, true
	}
	return false, false
}

// integer reads a number scalar.
func integer(n *yaml.Node) (int, bool) {
	s, ok := str(n)
	if !ok {
		return 0, false
	}
	i, err := strconv.Atoi(strings.TrimSpace(s))
	return i, err == nil
}

// items is a sequence's elements (nil otherwise).
func items(n *yaml.Node) []*yaml.Node {
	n = deref(n)
	if n == nil || n.Kind != yaml.SequenceNode {
		return nil
	}
	out := make([]*yaml.Node, 0, len(n.Content))
	for _, c := range n.Content {
		out = append(out, deref(c))
	}
	return out
}

// pair is a mapping entry.
type pair struct {
	key   string
	line  int
	value *yaml.Node
}

// pairs is a mapping's entries in order (nil otherwise).
func pairs(n *yaml.Node) []pair {
	n = deref(n)
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	var out []pair
	for i := 0; i+1 < len(n.Content); i += 2 {
		out = append(out, pair{n.Content[i].Value, n.Content[i].Line, deref(n.Content[i+1])})
	}
	return out
}

// lineOf is the line of n, or of the first of the fallbacks that exists.
func lineOf(n *yaml.Node, fallbacks ...*yaml.Node) int {
	for _, c := range append([]*yaml.Node{n}, fallbacks...) {
		if c != nil && c.Line > 0 {
			return c.Line
		}
	}
	return 0
}

// keyLine is the line of the first of keys present in mapping n (the key,
// not the value, so a block value still points at its name), or n's line.
func keyLine(n *yaml.Node, keys ...string) int {
	for _, k := range keys {
		for _, p := range pairs(n) {
			if p.key == k {
				return p.line
			}
		}
	}
	return lineOf(deref(n))
}

// parseJSON builds a yaml.Node tree from JSON, with the line of every key
// and value. A syntax error is returned with its line.
func parseJSON(data []byte) (*yaml.Node, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	lines := newLineIndex(data)
	n, err := jsonValue(dec, lines, 0)
	if err == nil {
		if _, err2 := dec.Token(); err2 != io.EOF {
			err = &syntaxError{line: lines.at(dec.InputOffset()), msg: "extra data after the JSON value"}
		}
	}
	if err != nil {
		var se *json.SyntaxError
		switch {
		case errors.As(err, &se):
			return nil, &syntaxError{line: lines.at(se.Offset), msg: se.Error()}
		case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
			return nil, &syntaxError{line: lines.at(int64(len(data))), msg: "unexpected end of JSON"}
		}
		return nil, err
	}
	return n, nil
}

const maxDepth = 200

func jsonValue(dec *json.Decoder, lines lineIndex, depth int) (*yaml.Node, error) {
	if depth > maxDepth {
		return nil, &syntaxError{line: lines.at(dec.InputOffset()), msg: "nested too deeply"}
	}
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	line := lines.at(dec.InputOffset())
	switch t := tok.(type) {
	case json.Delim:
		if t == '{' {
			m := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Line: line}
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return nil, err
				}
				k := &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: fmt.Sprint(kt), Line: lines.at(dec.InputOffset())}
				v, err := jsonValue(dec, lines, depth+1)
				if err != nil {
					return nil, err
				}
				m.Content = append(m.Content, k, v)
			}
			_, err := dec.Token() // '}'
			return m, err
		}
		s := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq", Line: line}
		for dec.More() {
			v, err := jsonValue(dec, lines, depth+1)
			if err != nil {
				return nil, err
			}
			s.Content = append(s.Content, v)
		}
		_, err := dec.Token() // ']'
		return s, err
	case string:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: t, Line: line}, nil
	case bool:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: strconv.FormatBool(t), Line: line}, nil
	case json.Number:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!int", Value: t.String(), Line: line}, nil
	case nil:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Value: "null", Line: line}, nil
	}
	return nil, fmt.Errorf("unexpected JSON token %v", tok)
}

// syntaxError is a parse error with the line it was found on.
type syntaxError struct {
	line int
	msg  string
}

func (e *syntaxError) Error() string { return fmt.Sprintf("line %d: %s", e.line, e.msg) }

// lineIndex maps byte offsets to 1-based line numbers.
type lineIndex []int64

func newLineIndex(data []byte) lineIndex {
	var idx lineIndex
	for i, b := range data {
		if b == '\n' {
			idx = append(idx, int64(i))
		}
	}
	return idx
}

// at is the line of the byte just before offset (the end of a token).
func (l lineIndex) at(offset int64) int {
	if offset > 0 {
		offset--
	}
	return 1 + sort.Search(len(l), func(i int) bool { return l[i] >= offset })
}
