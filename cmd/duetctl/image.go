package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/duetnet/duet/internal/image"
)

// imageCmd builds images without Docker: duet's own (what deploy/duet.yaml
// runs) and the Kubernetes lab's test images, as one tarball each that
// `ctr -n k8s.io images import` and `docker load -i` both take.
func imageCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "image", Short: "Build container images (duet's, the lab's) without Docker"}
	var out, ref, binDir string
	build := &cobra.Command{
		Use:   "build",
		Short: "Build duet's image (duetd, duetctl, the CNI plugins, nft) into a tarball",
		Long: "Build duet's image from make build's binaries. Load it with\n" +
			"  docker load -i bin/duet-image.tar   or   ctr -n k8s.io images import bin/duet-image.tar",
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			dir, err := binDirOr(binDir)
			if err != nil {
				return err
			}
			spec, err := image.Duet(dir, ref)
			if err != nil {
				return err
			}
			return writeImages(out, spec)
		},
	}
	build.Flags().StringVar(&out, "out", "bin/duet-image.tar", "tarball to write (replaced whole, never half-written)")
	build.Flags().StringVar(&ref, "ref", image.DuetRef, "the image's name")
	build.Flags().StringVar(&binDir, "bin-dir", "", "directory with duetd, duetctl, duet, duet-ipam, portmap, loopback (default: duetctl's own)")

	var labOut, labBin, kubeBin string
	var withDuet bool
	lab := &cobra.Command{
		Use:   "lab",
		Short: "Build the Kubernetes lab's images (pause, agnhost, busybox, glibc-dns-testing, CoreDNS) into a tarball",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			if kubeBin == "" {
				return fmt.Errorf("--k8s-bin-dir is required: the directory `bash hack/kube/build.sh` prints last (it holds agnhost and coredns)")
			}
			dir, err := binDirOr(labBin)
			if err != nil {
				return err
			}
			specs, err := image.Lab(kubeBin, dir)
			if err != nil {
				return err
			}
			if withDuet {
				d, err := image.Duet(dir, image.DuetRef)
				if err != nil {
					return err
				}
				specs = append(specs, d)
			}
			return writeImages(labOut, specs...)
		},
	}
	lab.Flags().StringVar(&labOut, "out", "bin/lab-images.tar", "tarball to write")
	lab.Flags().StringVar(&kubeBin, "k8s-bin-dir", "", "upstream binaries (agnhost, coredns), as hack/kube/build.sh leaves them")
	lab.Flags().StringVar(&labBin, "bin-dir", "", "duet's binaries, for duet-pause (default: duetctl's own directory)")
	lab.Flags().BoolVar(&withDuet, "with-duet", false, "add duet's own image too")
	cmd.AddCommand(build, lab)
	return cmd
}

// binDirOr defaults to the directory duetctl runs from, which is bin/
// after make build.
func binDirOr(dir string) (string, error) {
	if dir != "" {
		return dir, nil
	}
	self, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("finding duetctl's directory: %w; pass --bin-dir", err)
	}
	return filepath.Dir(self), nil
}

func writeImages(out string, specs ...image.Spec) error {
	if err := image.Write(out, specs...); err != nil {
		return err
	}
	var refs []string
	for _, s := range specs {
		refs = append(refs, s.Refs...)
	}
	fi, err := os.Stat(out)
	if err != nil {
		return err
	}
	fmt.Printf("wrote %s (%d MiB): %s\n", out, fi.Size()>>20, strings.Join(refs, " "))
	return nil
}
