package kubelab

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/duetnet/duet/internal/lab"
)

// E2EOptions select what upstream e2e.test runs against the kube lab.
type E2EOptions struct {
	Focus, Skip string
	// Procs > 1 runs specs in parallel through the ginkgo CLI.
	Procs   int
	Timeout time.Duration
	// Out is where the log and the JUnit report go (default: the lab's
	// e2e/ dir, one subdir per run).
	Out string
}

// DefaultSkip leaves out what cannot pass on one machine or takes too
// long for a lean run: SCTP (no module to load here), serial,
// disruptive and slow specs.
const DefaultSkip = `SCTP|\[Serial\]|\[Disruptive\]|\[Slow\]|\[Flaky\]`

// E2EResult is the suite's own count.
type E2EResult struct {
	Ran, Passed, Failed, Pending, Skipped int
	Failures                              []string
	Log                                   string
	Elapsed                               time.Duration
}

var (
	ranLine    = regexp.MustCompile(`Ran (\d+) of (\d+) Specs`)
	countsLine = regexp.MustCompile(`(\d+) Passed \| (\d+) Failed \| (\d+) Pending \| (\d+) Skipped`)
	failLine   = regexp.MustCompile(`^\s*\[(FAIL|PANICKED|TIMEDOUT)\] (.*)$`)
)

// E2E runs upstream e2e.test (the lab's pinned version) from the control
// plane's namespace, where it reaches the API server, the nodes and their
// NodePorts as a test runner beside a real cluster would.
func E2E(s lab.State, o E2EOptions, out io.Writer) (E2EResult, error) {
	k := s.Kubernetes
	if k == nil || !s.Ready {
		return E2EResult{}, fmt.Errorf("no kube lab is up: run `duetctl lab up --kubernetes`")
	}
	p := paths{root: k.Root}
	if o.Out == "" {
		o.Out = filepath.Join(k.Root, "e2e", time.Now().Format("150405"))
	}
	if o.Timeout == 0 {
		o.Timeout = 40 * time.Minute
	}
	if o.Skip == "" {
		o.Skip = DefaultSkip
	}
	if err := os.MkdirAll(o.Out, 0o755); err != nil {
		return E2EResult{}, err
	}
	args := []string{"--kubeconfig", p.kubeconfig("admin"), "--provider", "skeleton",
		"--num-nodes", strconv.Itoa(len(s.Nodes)), "--report-dir", o.Out}
	var argv []string
	if o.Procs > 1 {
		argv = append([]string{filepath.Join(k.BinDir, "ginkgo"), "--procs", strconv.Itoa(o.Procs),
			"--focus", o.Focus, "--skip", o.Skip, "--no-color", "--timeout", o.Timeout.String(),
			filepath.Join(k.BinDir, "e2e.test"), "--"}, args...)
	} else {
		argv = append(append([]string{filepath.Join(k.BinDir, "e2e.test")}, args...),
			"--ginkgo.focus", o.Focus, "--ginkgo.skip", o.Skip, "--ginkgo.no-color", "--ginkgo.timeout", o.Timeout.String())
	}
	logPath := filepath.Join(o.Out, "e2e.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return E2EResult{}, err
	}
	defer logf.Close()
	cmd := exec.Command("nsenter", append([]string{"--net=/run/netns/" + k.ControlPlane.NetNS, "--"}, argv...)...)
	cmd.Dir = o.Out
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	started := time.Now()
	if err := cmd.Start(); err != nil {
		return E2EResult{}, err
	}
	res := E2EResult{Log: logPath}
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			fmt.Fprintln(logf, line)
			if m := failLine.FindStringSubmatch(line); m != nil && !strings.Contains(line, "in [") {
				res.Failures = append(res.Failures, m[2])
				fmt.Fprintln(out, "  FAIL", m[2])
			}
			if m := ranLine.FindStringSubmatch(line); m != nil {
				res.Ran += atoi(m[1])
				fmt.Fprintln(out, strings.TrimSpace(line))
			}
			if m := countsLine.FindStringSubmatch(line); m != nil {
				res.Passed += atoi(m[1])
				res.Failed += atoi(m[2])
				res.Pending += atoi(m[3])
				res.Skipped += atoi(m[4])
			}
		}
	}()
	werr := cmd.Wait()
	pw.Close()
	<-done
	res.Elapsed = time.Since(started)
	fmt.Fprintf(out, "e2e: %d passed, %d failed, %d skipped in %.0f s (log %s)\n", res.Passed, res.Failed, res.Skipped, res.Elapsed.Seconds(), logPath)
	if werr != nil && res.Failed == 0 {
		return res, fmt.Errorf("e2e.test failed without a failed spec (%v): see %s", werr, logPath)
	}
	if res.Failed > 0 {
		return res, fmt.Errorf("%d e2e specs failed: see %s", res.Failed, logPath)
	}
	if res.Ran == 0 {
		return res, fmt.Errorf("the focus %q selected no spec: see %s", o.Focus, logPath)
	}
	return res, nil
}

func atoi(s string) int { n, _ := strconv.Atoi(s); return n }
