// Command duetctl is duet's operator CLI: it inspects and repairs the
// store (ipam), and runs the demo and, later, the lab and diagnostics.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

func main() {
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
	if err := root.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "duetctl:", err)
		os.Exit(1)
	}
}
