// Command duet-pause is the pod sandbox's pause process for duet's lab:
// the first container of every pod, holding its namespaces open. It
// sleeps until SIGINT or SIGTERM and then exits 0, and, being PID 1 when
// the pod shares its PID namespace, reaps the zombies that orphaned
// processes leave behind, as upstream's pause.c does.
//
// It is Go rather than upstream's C so that `make build` makes it with
// the rest of duet (CGO_ENABLED=0, so static: the pause image holds
// nothing else).
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	os.Exit(run(sigs, reap))
}

// run waits for signals: SIGCHLD calls reap, SIGINT and SIGTERM end it
// with status 0 (the runtime's "stopped as asked"). Several SIGCHLDs may
// arrive as one, which is why reap collects every child that has exited,
// not one per signal.
func run(sigs <-chan os.Signal, reap func() int) int {
	for s := range sigs {
		switch s {
		case syscall.SIGCHLD:
			reap()
		case syscall.SIGINT, syscall.SIGTERM:
			return 0
		}
	}
	return 0
}

// reap waits for every exited child without blocking and returns how many
// it collected. Equivalent to pause.c's `while (waitpid(-1, NULL, WNOHANG) > 0)`.
func reap() int {
	n := 0
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		if err == syscall.EINTR {
			continue
		}
		if pid <= 0 || err != nil {
			return n
		}
		n++
	}
}
