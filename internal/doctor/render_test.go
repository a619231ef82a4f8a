package doctor

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestRenderTableGroupsByLayer(t *testing.T) {
	fs := append(check(t, "testdata/seeds"), CheckHost(loadFacts(t, "bad"))...)
	Sort(fs)
	var b strings.Builder
	if err := RenderTable(&b, fs, false, 100); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	if strings.Contains(out, "\x1b[") {
		t.Error("colour without a terminal")
	}
	var headings []string
	for _, line := range strings.Split(out, "\n") {
		if line != "" && line[0] != ' ' && strings.HasSuffix(line, ")") {
			headings = append(headings, strings.Fields(line)[0])
		}
	}
	want := []string{"HOST", "DOCKER", "COMPOSE", "KUBEADM", "KUBERNETES", "CNI"}
	if diff := cmp.Diff(want, headings); diff != "" {
		t.Errorf("layer headings (-want +got):\n%s\n%s", diff, out)
	}
	for _, f := range fs {
		if !strings.Contains(out, f.Code) {
			t.Errorf("%s missing from the table", f.Code)
		}
	}
	if !strings.HasSuffix(out, summary(fs)+"\n") || !strings.HasPrefix(summary(fs), "9 errors, 15 warnings, 9 hints") {
		t.Errorf("summary %q", summary(fs))
	}
	for _, line := range strings.Split(out, "\n") {
		if len(line) > 100 && strings.Count(line, " ") > 1 && !strings.Contains(line, "/proc") {
			t.Errorf("line longer than the width: %q", line)
		}
	}
	b.Reset()
	RenderTable(&b, fs, true, 100)
	if !strings.Contains(b.String(), ansiRed) {
		t.Error("no colour when asked for")
	}
}

func TestRenderJSON(t *testing.T) {
	var b strings.Builder
	if err := RenderJSON(&b, nil); err != nil || strings.TrimSpace(b.String()) != "[]" {
		t.Errorf("no findings: %q, %v", b.String(), err)
	}
	fs := check(t, "testdata/seeds/002-services.yaml")
	b.Reset()
	RenderJSON(&b, fs)
	var back []Finding
	if err := json.Unmarshal([]byte(b.String()), &back); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(fs, back); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
	if !strings.Contains(b.String(), `"severity": "error"`) || !strings.Contains(b.String(), `"line": 19`) {
		t.Errorf("JSON lacks severity names or lines:\n%s", b.String())
	}
}
