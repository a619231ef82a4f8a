package bench

import (
	"os"
	"os/exec"
	"testing"
)

// buildShipped builds pkgs into dir the way `make build` does (static,
// CGO_ENABLED=0, -trimpath): the binaries users install. A cgo build links
// the C library dynamically, and the loader's work alone added about 3 ms
// to every plugin start on this project's machines, which is not what a
// user's runtime pays.
func buildShipped(b testing.TB, dir string, pkgs ...string) {
	b.Helper()
	cmd := exec.Command("go", append([]string{"build", "-trimpath", "-o", dir + "/"}, pkgs...)...)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("go build %v: %v\n%s", pkgs, err, out)
	}
}
