package main

import (
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

func TestRunStopsOnTERMAndINT(t *testing.T) {
	for _, s := range []os.Signal{syscall.SIGTERM, syscall.SIGINT} {
		sigs := make(chan os.Signal, 2)
		reaped := 0
		sigs <- syscall.SIGCHLD
		sigs <- s
		if code := run(sigs, func() int { reaped++; return 0 }); code != 0 {
			t.Errorf("%v: exit %d, want 0", s, code)
		}
		if reaped != 1 {
			t.Errorf("%v: reaped %d times before stopping, want 1 (SIGCHLD came first)", s, reaped)
		}
	}
}

// TestReapCollectsZombies leaves two children unwaited, as orphans
// reparented to a pod's PID 1 are, and checks that one reap takes both.
func TestReapCollectsZombies(t *testing.T) {
	var pids []int
	for range 2 {
		cmd := exec.Command("true")
		if err := cmd.Start(); err != nil {
			t.Skip("no `true` to run:", err)
		}
		pids = append(pids, cmd.Process.Pid)
	}
	deadline := time.Now().Add(5 * time.Second)
	got := 0
	for got < len(pids) && time.Now().Before(deadline) {
		got += reap()
		time.Sleep(10 * time.Millisecond)
	}
	if got != len(pids) {
		t.Fatalf("reaped %d of %d exited children", got, len(pids))
	}
	for _, pid := range pids {
		if err := syscall.Kill(pid, 0); err != syscall.ESRCH {
			t.Errorf("pid %d still exists (zombie?): kill 0 = %v", pid, err)
		}
	}
}
