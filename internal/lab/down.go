package lab

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// Down removes everything the lab made: its duetd processes, every
// namespace named duet-lab-* (taking their links, routes and nftables
// tables with them) and its data directory. It works after a failed or
// interrupted up, and when there is no lab at all.
func Down(datadir string, out io.Writer) error {
	s, _, err := Load(datadir)
	if err != nil {
		fmt.Fprintln(out, "warning:", err)
	}
	for _, pid := range append(append([]int{}, s.PIDs...), s.RouterPID, s.StorePID) {
		if pid == 0 {
			continue
		}
		if p, err := os.FindProcess(pid); err == nil && p.Signal(syscall.SIGTERM) == nil {
			fmt.Fprintf(out, "stopped pid %d\n", pid)
		}
	}
	// Any duetd started for the lab (nodes, etcd), even one whose pid was
	// not saved: each names a path under datadir.
	_ = exec.Command("pkill", "-TERM", "-f", "duetd .*"+datadir).Run()
	_ = exec.Command("pkill", "-TERM", "-f", "bird -c "+datadir).Run()
	time.Sleep(100 * time.Millisecond)
	ents, _ := os.ReadDir("/var/run/netns")
	var errs []string
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), Prefix) {
			continue
		}
		if err := ip("netns", "del", e.Name()); err != nil {
			errs = append(errs, err.Error())
		} else {
			fmt.Fprintf(out, "deleted netns %s\n", e.Name())
		}
	}
	if err := os.RemoveAll(datadir); err != nil {
		errs = append(errs, err.Error())
	}
	if len(errs) > 0 {
		return fmt.Errorf("lab down left something behind: %s", strings.Join(errs, "; "))
	}
	return nil
}
