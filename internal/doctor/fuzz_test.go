package doctor

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var fuzzExts = []string{".json", ".yaml", ".sh", ".conflist", ""}

// FuzzParse feeds arbitrary bytes to kind detection, parsing and every
// check: no panic (caught or not), and malformed input gives INPUT001
// with a line, never a crash.
//
//	go test ./internal/doctor/ -run XXX -fuzz FuzzParse -fuzztime 30s
func FuzzParse(f *testing.F) {
	for _, dir := range []string{"testdata/seeds", "testdata/fixed", "testdata/checks", "testdata/checks/kube004-bad"} {
		files, _ := filepath.Glob(filepath.Join(dir, "*"))
		for _, path := range files {
			if data, err := os.ReadFile(path); err == nil {
				f.Add(uint8(0), data)
				f.Add(uint8(1), data)
			}
		}
	}
	f.Add(uint8(2), []byte("dockerd --ipv6 --fixed-cidr-v6 \"fd00::/64\" --default-address-pool base=fd00::/48,size=64"))
	f.Add(uint8(1), []byte("a: &x [*x]\n---\nkind: Service\napiVersion: v1\nspec: {ipFamilies: [IPv6, IPv6, IPv4]}"))
	f.Add(uint8(0), []byte(`{"plugins": [{"type": "duet", "pools": [{"cidr": 1}]}], "name": "x"}`))
	f.Fuzz(func(t *testing.T, ext uint8, data []byte) {
		name := "fuzz" + fuzzExts[int(ext)%len(fuzzExts)]
		file := Parse(name, data)
		for _, d := range file.Docs {
			if d.Root == nil {
				t.Fatalf("document of kind %q without a tree", d.Kind)
			}
		}
		for _, fd := range CheckFiles([]*File{file}) {
			if strings.HasPrefix(fd.What, internalPrefix) {
				t.Fatalf("%s", fd.What)
			}
			if fd.Code == "INPUT001" && fd.Line < 0 {
				t.Fatalf("INPUT001 with line %d", fd.Line)
			}
		}
	})
}
