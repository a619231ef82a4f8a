package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"

	"github.com/spf13/cobra"
)

func installCNICmd() *cobra.Command {
	var from, to string
	cmd := &cobra.Command{
		Use:   "install-cni",
		Short: "Copy the CNI plugins into the host's plugin directory, each by write-then-rename",
		Long: `install-cni copies every file of --from into --to (the DaemonSet's init
container runs it with the host's /opt/cni/bin mounted at --to). Each file
is written to a temporary file in --to, made mode 0755, synced and renamed
over the old one, so a kubelet starting a plugin at that moment runs either
the old binary or the new one, never half of one. Files already identical
are left alone, so a restart changes nothing.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return installCNI(from, to, cmd.OutOrStdout())
		},
	}
	cmd.Flags().StringVar(&from, "from", "/opt/duet/cni", "directory holding the plugins (in duet's image)")
	cmd.Flags().StringVar(&to, "to", "/host/opt/cni/bin", "the host's CNI plugin directory, as mounted in this container")
	return cmd
}

// tmpPrefix starts the name of install-cni's temporary files, so a later
// run can remove those a killed run left behind. The leading dot keeps
// them out of a runtime's way: nothing names a plugin ".duet-install-…".
const tmpPrefix = ".duet-install-"

// installCNI copies every regular file of from into to by write-then-rename
// and prints one line per file: "installed NAME" or "unchanged NAME".
// Equivalent to `install -m 0755 FROM/* TO/`, but atomic per file.
func installCNI(from, to string, out io.Writer) error {
	entries, err := os.ReadDir(from)
	if err != nil {
		return fmt.Errorf("--from %s: %w (it should hold duet's plugins: run this in duet's image, or point --from at them)", from, unwrapPath(err))
	}
	var names []string
	for _, e := range entries {
		fi, err := os.Stat(filepath.Join(from, e.Name())) // follows symlinks
		if err != nil {
			return fmt.Errorf("%s: %w (remove the broken entry from --from)", filepath.Join(from, e.Name()), unwrapPath(err))
		}
		if fi.Mode().IsRegular() {
			names = append(names, e.Name())
		}
	}
	if len(names) == 0 {
		return fmt.Errorf("--from %s: no files to install (it should hold duet's plugins: duet, duet-ipam, portmap, loopback)", from)
	}
	sort.Strings(names)
	if err := prepareDest(to); err != nil {
		return err
	}
	for _, name := range names {
		changed, err := installFile(filepath.Join(from, name), filepath.Join(to, name))
		if err != nil {
			return err
		}
		verb := "unchanged"
		if changed {
			verb = "installed"
		}
		fmt.Fprintf(out, "%s %s\n", verb, filepath.Join(to, name))
	}
	return syncDir(to)
}

// prepareDest checks that to is a directory and removes temporary files
// a killed run left there.
func prepareDest(to string) error {
	fi, err := os.Stat(to)
	if err != nil {
		return fmt.Errorf("--to %s: %w (mount the host's CNI plugin directory there, a hostPath volume of /opt/cni/bin)", to, unwrapPath(err))
	}
	if !fi.IsDir() {
		return fmt.Errorf("--to %s: not a directory (mount the host's CNI plugin directory there, a hostPath volume of /opt/cni/bin)", to)
	}
	left, err := filepath.Glob(filepath.Join(to, tmpPrefix+"*"))
	if err != nil {
		return err
	}
	for _, p := range left {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("%s: removing a temporary file of an earlier run: %w", p, unwrapPath(err))
		}
	}
	return nil
}

// installFile makes dst a 0755 copy of src, unless it already is one.
// It reports whether it wrote dst.
func installFile(src, dst string) (bool, error) {
	want, err := os.ReadFile(src)
	if err != nil {
		return false, fmt.Errorf("%s: %w (is the image complete?)", src, unwrapPath(err))
	}
	if fi, err := os.Lstat(dst); err == nil {
		if fi.IsDir() {
			return false, fmt.Errorf("%s: is a directory, where the plugin %s belongs (remove it)", dst, filepath.Base(dst))
		}
		if fi.Mode().IsRegular() && fi.Mode().Perm() == 0o755 && fi.Size() == int64(len(want)) {
			if have, err := os.ReadFile(dst); err == nil && bytes.Equal(have, want) {
				return false, nil
			}
		}
	}
	dir := filepath.Dir(dst)
	f, err := os.CreateTemp(dir, tmpPrefix+filepath.Base(dst)+"-*")
	if err != nil {
		return false, fmt.Errorf("%s: %w (the directory must be writable by root in this container: check the hostPath volume is not read-only)", dir, unwrapPath(err))
	}
	tmp := f.Name()
	err = writeSynced(f, want)
	if err == nil {
		err = os.Rename(tmp, dst)
	}
	if err != nil {
		os.Remove(tmp)
		return false, fmt.Errorf("%s: %w (is the file system full or read-only?)", dst, unwrapPath(err))
	}
	return true, nil
}

// writeSynced writes b to f, sets mode 0755 (CreateTemp makes 0600, and
// the umask must not decide a plugin's mode), syncs and closes it.
func writeSynced(f *os.File, b []byte) error {
	_, err := f.Write(b)
	if err == nil {
		err = f.Chmod(0o755)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// syncDir makes the renames durable: a crash after install-cni returns
// cannot bring back the old names.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("%s: %w", dir, unwrapPath(err))
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("%s: sync: %w", dir, err)
	}
	return nil
}

// unwrapPath drops the *PathError's own copy of the path, which every
// message here already starts with: "open /x: permission denied" becomes
// "permission denied".
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	var le *os.LinkError
	if errors.As(err, &le) {
		return le.Err
	}
	return err
}
