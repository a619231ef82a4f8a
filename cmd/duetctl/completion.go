package main

import (
	"context"

	"github.com/spf13/cobra"

	"github.com/duetnet/duet/internal/cluster"
	"github.com/duetnet/duet/internal/store"
)

// choices completes a flag whose value is one of a fixed set; each
// choice is "value\tdescription", which zsh and fish show and bash drops.
func choices(cmd *cobra.Command, flag string, values ...string) {
	_ = cmd.RegisterFlagCompletionFunc(flag, cobra.FixedCompletions(values, cobra.ShellCompDirectiveNoFileComp))
}

// storeNodes completes node names from the store the command's flags
// name: nothing (rather than an error) when it cannot be opened.
func storeNodes(sf *storeFlags) cobra.CompletionFunc {
	return func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		s, err := sf.open()
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		defer s.Close()
		var names []string
		_ = s.View(context.Background(), func(tx store.Tx) error {
			nodes, err := cluster.List(tx)
			for _, n := range nodes {
				names = append(names, n.Name)
			}
			return err
		})
		return names, cobra.ShellCompDirectiveNoFileComp
	}
}
