package agent

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// TestLogResult: a failure that repeats every sync is logged once (and
// again after repeatFailure), a new one at once, and the recovery once.
func TestLogResult(t *testing.T) {
	var buf bytes.Buffer
	a := New(Config{Node: "a"}, nil, nil, nil, slog.New(slog.NewTextHandler(&buf, nil)))
	waiting := errors.New(`node "a" has no spec.podCIDRs`)
	for range 5 {
		a.logResult(waiting)
	}
	a.logResult(errors.New("waiting for the Kubernetes API"))
	a.logResult(nil)
	a.logResult(nil)
	a.logResult(waiting)
	a.lastLogged = time.Now().Add(-repeatFailure)
	a.logResult(waiting)
	got := buf.String()
	if n := strings.Count(got, "sync failed"); n != 4 {
		t.Errorf("%d failures logged, want 4 (first, new, after recovery, a minute later):\n%s", n, got)
	}
	if n := strings.Count(got, "sync succeeded again"); n != 1 {
		t.Errorf("%d recoveries logged, want 1:\n%s", n, got)
	}
}
