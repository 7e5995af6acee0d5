package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/vmledger/vmledger/cmd/vmledger/internal/buildinfo"
)

// setVersion gives the root command --version: the same line as the
// version verb, from the build information the Go toolchain stamped in.
func setVersion(root *cobra.Command) {
	root.Version = buildinfo.Read().String()
	root.SetVersionTemplate("{{.Version}}\n")
}

func newVersionCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print this build's module version and VCS revision",
		Long: `Print the module version and VCS revision this binary was built from, as
the Go toolchain recorded them (runtime/debug.ReadBuildInfo): a build from
a git work tree reports version "(devel)" and the commit, with "modified"
when the tree had uncommitted changes; "go install ...@v1.2.3" reports the
version. The agent exports the same as vmledger_build_info. It needs no agent.`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			in := buildinfo.Read()
			if g.json {
				return printJSON(cmd.OutOrStdout(), in)
			}
			_, err := fmt.Fprintln(cmd.OutOrStdout(), in.String())
			return err
		},
	}
	addJSON(cmd, g)
	return cmd
}
