package doctor

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
)

const (
	ansiReset  = "\x1b[0m"
	ansiBold   = "\x1b[1m"
	ansiRed    = "\x1b[31m"
	ansiYellow = "\x1b[33m"
	ansiCyan   = "\x1b[36m"
	ansiDim    = "\x1b[2m"
)

// RenderJSON writes the findings as a JSON list (empty, not null, when
// there are none).
func RenderJSON(w io.Writer, fs []Finding) error {
	if fs == nil {
		fs = []Finding{}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(fs)
}

// RenderTable writes the findings grouped by layer, from the host up, each
// with its place, what is wrong, why and the fix, wrapped to width. With
// color, severities and headings are coloured (for terminals only).
func RenderTable(w io.Writer, fs []Finding, color bool, width int) error {
	if width < 60 {
		width = 100
	}
	paint := func(code, s string) string {
		if !color {
			return s
		}
		return code + s + ansiReset
	}
	sevColor := map[Severity]string{Error: ansiBold + ansiRed, Warning: ansiYellow, Hint: ansiCyan}
	var b strings.Builder
	for _, layer := range layerOrder {
		var group []Finding
		for _, f := range fs {
			if f.Layer == layer {
				group = append(group, f)
			}
		}
		if len(group) == 0 {
			continue
		}
		fmt.Fprintf(&b, "%s\n", paint(ansiBold, fmt.Sprintf("%s (%d)", strings.ToUpper(string(layer)), len(group))))
		for _, f := range group {
			place := strings.TrimSpace(f.Location() + "  " + f.Object)
			fmt.Fprintf(&b, "  %s %-10s %s\n", paint(sevColor[f.Severity], fmt.Sprintf("%-7s", f.Severity)), f.Code, paint(ansiDim, place))
			wrap(&b, f.What, "             ", "             ", width)
			wrap(&b, f.Why, "             why: ", "                  ", width)
			wrap(&b, f.Fix, "             fix: ", "                  ", width)
		}
		b.WriteString("\n")
	}
	b.WriteString(summary(fs) + "\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// summary is "2 errors, 1 warning, 3 hints", or "no problems found".
func summary(fs []Finding) string {
	n := map[Severity]int{}
	for _, f := range fs {
		n[f.Severity]++
	}
	if len(fs) == 0 {
		return "no problems found"
	}
	var parts []string
	for _, s := range []Severity{Error, Warning, Hint} {
		if n[s] > 0 {
			name := s.String()
			if n[s] > 1 {
				name += "s"
			}
			parts = append(parts, fmt.Sprintf("%d %s", n[s], name))
		}
	}
	return strings.Join(parts, ", ")
}

// wrap writes text word-wrapped to width, the first line after first and
// the others after rest.
func wrap(b *strings.Builder, text, first, rest string, width int) {
	line := first
	empty := true
	for _, word := range strings.Fields(text) {
		if !empty && len(line)+1+len(word) > width {
			b.WriteString(line + "\n")
			line, empty = rest, true
		}
		if !empty {
			line += " "
		}
		line += word
		empty = false
	}
	b.WriteString(line + "\n")
}
