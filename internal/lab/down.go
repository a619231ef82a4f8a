package lab

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Down removes everything the lab made: its processes, every namespace
// named duet-lab-* (taking their links, routes and nftables tables with
// them) and its data directory, where its nodes' sysctl records are too.
// It returns only when every process it stopped has exited, so a lab up
// right after it finds nothing of the old one. It works after a failed or
// interrupted up, and when there is no lab at all.
func Down(datadir string, out io.Writer) error {
	s, _, err := Load(datadir)
	if err != nil {
		fmt.Fprintln(out, "warning:", err)
	}
	// Docker's containers and networks first, while the nodes' drivers
	// still answer Docker's Leave and DeleteNetwork.
	errs := downDocker(out)
	if left := stopAll(labPIDs(s, datadir), out); len(left) > 0 {
		errs = append(errs, fmt.Sprintf("pids %v did not exit after SIGKILL", left))
	}
	ents, _ := os.ReadDir("/var/run/netns")
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

// labPIDs are the processes the lab started: those its state names, every
// process inside one of its namespaces (duetd, bird, a probe left by an
// interrupted run), and any duetd or bird naming a path under datadir
// (one whose pid was not saved yet).
func labPIDs(s State, datadir string) []int {
	pids := append(append([]int{}, s.PIDs...), s.RouterPID, s.StorePID)
	inodes := map[uint64]bool{}
	ents, _ := os.ReadDir("/var/run/netns")
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), Prefix) {
			continue
		}
		var st syscall.Stat_t
		if syscall.Stat(filepath.Join("/var/run/netns", e.Name()), &st) == nil {
			inodes[st.Ino] = true
		}
	}
	procs, _ := os.ReadDir("/proc")
	self := os.Getpid()
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil || pid == self {
			continue
		}
		var st syscall.Stat_t
		if syscall.Stat(filepath.Join("/proc", p.Name(), "ns", "net"), &st) == nil && inodes[st.Ino] {
			pids = append(pids, pid)
			continue
		}
		if datadir == "" {
			continue
		}
		cmdline, _ := os.ReadFile(filepath.Join("/proc", p.Name(), "cmdline"))
		args := strings.Split(string(cmdline), "\x00")
		if len(args) > 0 && slices.Contains([]string{"duetd", "bird"}, filepath.Base(args[0])) && strings.Contains(string(cmdline), datadir) {
			pids = append(pids, pid)
		}
	}
	slices.Sort(pids)
	pids = slices.Compact(pids)
	return slices.DeleteFunc(pids, func(p int) bool { return p <= 1 })
}

// stopAll sends SIGTERM, waits up to 10 s for every pid to exit, then
// SIGKILLs what is left and waits again; it returns the pids still alive.
func stopAll(pids []int, out io.Writer) []int {
	for _, pid := range pids {
		if syscall.Kill(pid, syscall.SIGTERM) == nil {
			fmt.Fprintf(out, "stopping pid %d\n", pid)
		}
	}
	left := waitExit(pids, 10*time.Second)
	for _, pid := range left {
		fmt.Fprintf(out, "pid %d ignored SIGTERM for 10 s: SIGKILL\n", pid)
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	return waitExit(left, 5*time.Second)
}

// waitExit polls until no pid is alive or the timeout passes, and returns
// those still alive. A zombie has exited: its parent (not us) reaps it.
func waitExit(pids []int, timeout time.Duration) []int {
	deadline := time.Now().Add(timeout)
	for {
		pids = slices.DeleteFunc(pids, func(pid int) bool { return !alive(pid) })
		if len(pids) == 0 || time.Now().After(deadline) {
			return pids
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func alive(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the command name in parentheses, which may
	// itself hold spaces or parentheses.
	if i := strings.LastIndexByte(string(stat), ')'); i >= 0 && i+2 < len(stat) {
		return stat[i+2] != 'Z' && stat[i+2] != 'X'
	}
	return true
}
