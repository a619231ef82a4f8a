package bolt

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/duetnet/duet/internal/store"
	"github.com/duetnet/duet/internal/store/storetest"
)

const (
	childEnv = "DUET_BOLT_CHILD" // "increment" or "crash"
	pathEnv  = "DUET_BOLT_PATH"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		s, err := Open(filepath.Join(t.TempDir(), "duet.db"), Options{})
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

// TestHelperProcess is the body of the child processes started by the
// multi-process tests; run normally it does nothing.
func TestHelperProcess(t *testing.T) {
	mode := os.Getenv(childEnv)
	if mode == "" {
		return
	}
	s, err := Open(os.Getenv(pathEnv), Options{Timeout: 2 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	switch mode {
	case "increment":
		for i := 0; i < 100; i++ {
			if err := storetest.Increment(ctx, s, "counter"); err != nil {
				t.Fatal(err)
			}
		}
	case "crash":
		for n := 1; ; n++ {
			// Varying sizes make commits split, merge and free pages.
			v := []byte(strconv.Itoa(n) + strings.Repeat("x", n%7*700))
			err := s.Update(ctx, func(tx store.Tx) error {
				if err := tx.Put("k1", v); err != nil {
					return err
				}
				return tx.Put("k2", v)
			})
			if err != nil {
				t.Fatal(err)
			}
			if n == 1 {
				fmt.Println("READY")
			}
		}
	default:
		t.Fatalf("unknown %s=%q", childEnv, mode)
	}
}

func child(path, mode string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), childEnv+"="+mode, pathEnv+"="+path)
	return cmd
}

func TestMultiProcessIncrements(t *testing.T) {
	path := filepath.Join(t.TempDir(), "duet.db")
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if out, err := child(path, "increment").CombinedOutput(); err != nil {
				t.Errorf("child %d: %v\n%s", i, err, out)
			}
		}()
	}
	wg.Wait()
	s, err := Open(path, Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	err = s.View(context.Background(), func(tx store.Tx) error {
		v, _, err := tx.Get("counter")
		if string(v) != "800" {
			t.Errorf("counter = %q, want 800", v)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestCrashSafety(t *testing.T) {
	path := filepath.Join(t.TempDir(), "duet.db")
	for i := 0; i < 20; i++ {
		cmd := child(path, "crash")
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		ready := false
		for sc := bufio.NewScanner(stdout); !ready && sc.Scan(); {
			ready = sc.Text() == "READY"
		}
		if ready {
			time.Sleep(time.Duration(2+rand.IntN(48)) * time.Millisecond)
		}
		_ = cmd.Process.Kill() // SIGKILL
		_ = cmd.Wait()
		if !ready {
			t.Fatalf("run %d: child exited before its first commit", i)
		}
		checkPair(t, path, i)
	}
}

// checkPair opens the file a killed child was writing and checks that it
// is intact and that k1 and k2, always written together, agree.
func checkPair(t *testing.T, path string, run int) {
	t.Helper()
	s, err := Open(path, Options{Timeout: time.Second})
	if err != nil {
		t.Fatalf("run %d: reopen after SIGKILL: %v", run, err)
	}
	defer s.Close()
	err = s.db.View(func(tx *bbolt.Tx) error {
		for err := range tx.Check() {
			t.Errorf("run %d: bbolt check: %v", run, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	err = s.View(context.Background(), func(tx store.Tx) error {
		k1, ok1, err1 := tx.Get("k1")
		k2, ok2, err2 := tx.Get("k2")
		if err := errors.Join(err1, err2); err != nil {
			return err
		}
		if !ok1 || !ok2 || string(k1) != string(k2) {
			t.Errorf("run %d: torn transaction: k1=%.10q (%v) k2=%.10q (%v)", run, k1, ok1, k2, ok2)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestLockTimeout(t *testing.T) {
	path := filepath.Join(t.TempDir(), "duet.db")
	holder, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	// flock locks belong to the open file description, so a second Open in
	// this process contends exactly as another process would.
	for _, ro := range []bool{false, true} {
		start := time.Now()
		s, err := Open(path, Options{Timeout: 200 * time.Millisecond, ReadOnly: ro})
		if err == nil {
			s.Close()
			t.Fatalf("ReadOnly=%v: second Open succeeded while the file was held", ro)
		}
		if !errors.Is(err, store.ErrUnavailable) || !strings.Contains(err.Error(), path) {
			t.Errorf("ReadOnly=%v: error %q: want store.ErrUnavailable naming %s", ro, err, path)
		}
		if d := time.Since(start); d < 100*time.Millisecond || d > 5*time.Second {
			t.Errorf("ReadOnly=%v: gave up after %v, want about 200ms", ro, d)
		}
	}
	if err := holder.Close(); err != nil {
		t.Fatal(err)
	}
	s, err := Open(path, Options{Timeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatalf("Open after the holder closed: %v", err)
	}
	s.Close()
}

func TestOpenCreatesPrivateDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "var", "lib", "duet")
	s, err := Open(filepath.Join(dir, "duet.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("state dir: %v, %v; want mode 0700", fi, err)
	}
	if s.Path() != filepath.Join(dir, "duet.db") {
		t.Fatalf("Path() = %q", s.Path())
	}
}

func TestOpenCorrupt(t *testing.T) {
	path := filepath.Join(t.TempDir(), "duet.db")
	if err := os.WriteFile(path, []byte(strings.Repeat("not a bolt file ", 1024)), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Open(path, Options{})
	if err == nil || errors.Is(err, store.ErrUnavailable) || !strings.Contains(err.Error(), path) {
		t.Fatalf("Open(corrupt) = %v; want a hard error naming %s", err, path)
	}
}

func TestReadOnly(t *testing.T) {
	path := filepath.Join(t.TempDir(), "duet.db")
	if _, err := Open(path, Options{ReadOnly: true}); err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("ReadOnly Open of a missing file = %v; want an error naming %s", err, path)
	}
	w, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := storetest.Increment(context.Background(), w, "n"); err != nil {
		t.Fatal(err)
	}
	w.Close()
	r, err := Open(path, Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if err := storetest.Increment(context.Background(), r, "n"); err == nil {
		t.Fatal("Update on a read-only store succeeded")
	}
	r2, err := Open(path, Options{ReadOnly: true, Timeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatalf("second reader blocked by the first: %v", err)
	}
	r2.Close()
}
