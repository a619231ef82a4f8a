package kubelab

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// This file runs the lab's long-lived processes: each in its network
// namespace through `nsenter --net` (the mount namespace stays the
// host's), in its own session so it outlives duetctl, with its output in
// log/NAME.log.

type proc struct {
	name  string
	netns string // a name under /run/netns
	argv  []string
}

func (p paths) logFile(name string) string { return filepath.Join(p.logs(), name+".log") }

func start(p paths, pr proc) (int, error) {
	if err := os.MkdirAll(p.logs(), 0o755); err != nil {
		return 0, err
	}
	logf, err := os.OpenFile(p.logFile(pr.name), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return 0, err
	}
	defer logf.Close()
	argv := append([]string{"--net=/run/netns/" + pr.netns, "--"}, pr.argv...)
	cmd := exec.Command("nsenter", argv...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("starting %s: %w", pr.name, err)
	}
	go func() { _ = cmd.Wait() }()
	return cmd.Process.Pid, nil
}

func alive(pid int) bool { return pid > 0 && syscall.Kill(pid, 0) == nil }

// stop sends SIGTERM, waits up to grace, then SIGKILLs. nsenter execs the
// program, so the pid is the program's own.
func stop(pid int, grace time.Duration) {
	if !alive(pid) {
		return
	}
	_ = syscall.Kill(pid, syscall.SIGTERM)
	deadline := time.Now().Add(grace)
	for alive(pid) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if alive(pid) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

// waitFor polls ok until it says true, ctx ends or limit passes; the
// error names what was awaited, the last reason, and the log to read.
func waitFor(ctx context.Context, what string, limit time.Duration, logHint string, ok func() (bool, string)) error {
	deadline := time.Now().Add(limit)
	last := ""
	for {
		done, why := ok()
		if done {
			return nil
		}
		last = why
		if time.Now().After(deadline) {
			msg := fmt.Sprintf("%s: not ready after %s", what, limit)
			if last != "" {
				msg += " (" + last + ")"
			}
			if logHint != "" {
				msg += "; see " + logHint
			}
			return fmt.Errorf("%s", msg)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// run runs a short command, in netns if given, and returns its output.
func run(netns string, argv ...string) (string, error) {
	if netns != "" {
		argv = append([]string{"nsenter", "--net=/run/netns/" + netns, "--"}, argv...)
	}
	out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s: %v: %s", strings.Join(argv, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}
