// Command duetctl is duet's operator CLI: it inspects and repairs the
// store (ipam) and a node (node), runs the lab, the connectivity probe,
// the doctor and the demo, and builds duet's images. `duetctl completion
// bash` completes commands, flags and flag values.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

func main() {
	if err := rootCmd().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "duetctl:", err)
		os.Exit(1)
	}
}

func rootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "duetctl",
		Short:         "Operate duet, IPv6-first dual-stack container networking",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(ipamCmd(), demoCmd(), nodeCmd(), labCmd(), connectivityCmd(), doctorCmd())
	root.AddCommand(installCNICmd())
	root.AddCommand(imageCmd())
	root.AddCommand(policyCmd())
	return root
}
