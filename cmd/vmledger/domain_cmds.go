package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/google/uuid"
	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"github.com/vmledger/vmledger/domains"
	"github.com/vmledger/vmledger/domains/api"
)

func addCommandID(cmd *cobra.Command, id *string) {
	cmd.Flags().StringVar(id, "command-id", "", "idempotency key: a retry of the same request with the same ID acts once and gets the first reply; the ID used for a different request is refused (default: random)")
}

func orRandom(id string) string {
	if id == "" {
		return uuid.NewString()
	}
	return id
}

func newDefineCmd(g *globals) *cobra.Command {
	var cmdID string
	var fromLibvirt bool
	cmd := &cobra.Command{
		Use:   "define FILE",
		Short: "Define a domain (or update its config) from a JSON or YAML file ('-' for stdin)",
		Long: "Define a domain (or update its config) from a JSON or YAML file ('-' for stdin).\n\n" +
			"As virsh define: a config whose name exists (and without a UUID, or with that domain's) updates that\n" +
			"domain; the same config again changes nothing and says so (exit 0). A running domain keeps what it\n" +
			"runs until its next start: info shows what is pending, config --live what runs. Left out, vcpus is 1\n" +
			"and machine is pc.\n\n" +
			"The file is read strictly: unknown fields, keys in another case, a key given twice, a second\n" +
			"YAML document and the all-zero UUID are errors. Names must not parse as UUIDs; vcpus, memory\n" +
			"and disks must fit the machine type (docs/cli.md, \"Config file\").",
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := readDefineInput(args[0], cmd.InOrStdin(), fromLibvirt)
			if err != nil {
				return err
			}
			var res domains.Result
			if err := g.call(cmd.Context(), api.VerbDefine, api.DefineRequest{CommandID: orRandom(cmdID), Config: cfg}, &res); err != nil {
				return err
			}
			switch {
			case res.Unchanged:
				return g.printResult(cmd, res, "is already defined with this configuration: nothing changed")
			case res.Updated && res.State.Active():
				return g.printResult(cmd, res, "updated: the new config applies at the next start (vmledger info shows what is pending)")
			case res.Updated:
				return g.printResult(cmd, res, "updated")
			}
			return g.printResult(cmd, res, "defined")
		},
	}
	addCommandID(cmd, &cmdID)
	addFromLibvirt(cmd, &fromLibvirt)
	addJSON(cmd, g)
	return cmd
}

// maxConfigFile bounds what define reads; a config is far smaller
// (domains.MaxConfigJSON).
const maxConfigFile = 1 << 20

// readConfig reads a config strictly: unknown fields, keys in the wrong
// case, keys given twice and a second YAML document are errors, so a typo
// never silently becomes a default or an override.
func readConfig(path string, stdin io.Reader) (domains.Config, error) {
	var cfg domains.Config
	err := readYAMLInto("config", path, stdin, maxConfigFile, func(js []byte) (err error) {
		cfg, err = domains.DecodeConfig(js)
		return err
	})
	return cfg, err
}

func newUndefineCmd(g *globals) *cobra.Command {
	return newLifecycleCmd(g, "undefine", "Remove a shut-off domain's definition (its history stays in the log)")
}

// newLifecycleCmd makes a verb that takes one domain.
func newLifecycleCmd(g *globals, verb, short string) *cobra.Command {
	var f jobFlags
	var paused, forceBoot bool
	cmd := &cobra.Command{
		Use:   verb + " DOMAIN",
		Short: short,
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := api.DomainRequest{CommandID: orRandom(f.cmdID), Domain: args[0], Paused: paused, ForceBoot: forceBoot}
			// A start that restores a managed save is a restore job.
			return g.runJob(cmd, f, verb, req, pastTense(verb))
		},
	}
	f.add(cmd, g, false)
	if verb == "start" {
		cmd.Flags().BoolVar(&paused, "paused", false, "leave the guest paused after boot")
		cmd.Flags().BoolVar(&forceBoot, "force-boot", false, "discard the domain's managed save image and boot (without it, start restores the image)")
	} else {
		_ = cmd.Flags().MarkHidden("detach")
		_ = cmd.Flags().MarkHidden("no-progress")
	}
	return cmd
}

func pastTense(verb string) string {
	switch verb {
	case "shutdown":
		return "is being shut down"
	case "reset":
		return "reset"
	case "start":
		return "started"
	case "suspend":
		return "suspended"
	case "resume":
		return "resumed"
	case "destroy":
		return "destroyed"
	}
	return verb + "d"
}

func (g *globals) printResult(cmd *cobra.Command, res domains.Result, what string) error {
	if g.json {
		return printJSON(cmd.OutOrStdout(), res)
	}
	seqs := make([]string, len(res.Seqs))
	for i, s := range res.Seqs {
		seqs[i] = fmt.Sprint(s)
	}
	fmt.Fprintf(cmd.OutOrStdout(), "Domain %s %s (uuid %s, state %s", res.Name, what, res.Domain, res.State)
	if len(seqs) > 0 {
		fmt.Fprintf(cmd.OutOrStdout(), ", seq %s", strings.Join(seqs, ","))
	}
	fmt.Fprintln(cmd.OutOrStdout(), ")")
	return nil
}

func newListCmd(g *globals) *cobra.Command {
	var state string
	var allHosts bool
	var lf *listFlags
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List domains (of --host, or with --all-hosts of every agent on the cluster)",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkState(state); err != nil {
				return err
			}
			if allHosts {
				return listAllHosts(cmd.Context(), g, cmd.OutOrStdout(), state)
			}
			var rep api.ListReply
			if err := g.call(cmd.Context(), api.VerbList, api.ListRequest{State: state}, &rep); err != nil {
				return err
			}
			if g.json {
				return printJSON(cmd.OutOrStdout(), rep)
			}
			if short, err := lf.print(cmd.OutOrStdout(), rep); short {
				return err
			}
			w := newTable(cmd.OutOrStdout())
			fmt.Fprintln(w, "NAME\tUUID\tSTATE\tREASON\tVERSION\tMANAGED SAVE")
			for _, d := range rep.Domains {
				managed := "no"
				if d.ManagedSave {
					managed = "yes"
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%d\t%s\n", d.Name, d.UUID, d.State, d.Reason, d.Version, managed)
			}
			return w.Flush()
		},
	}
	cmd.Flags().StringVar(&state, "state", "", "only domains in this state (running, paused, \"shut off\", ...)")
	lf = addListFlags(cmd) // virsh_cmds.go
	cmd.Flags().BoolVar(&allHosts, "all-hosts", false, "every agent that answers discovery on the cluster, with a HOST column; a host that does not answer is reported and fails the exit code")
	addJSON(cmd, g)
	return cmd
}

func newInfoCmd(g *globals) *cobra.Command {
	var at string
	cmd := &cobra.Command{
		Use:   "info DOMAIN [--at SEQ|TIME]",
		Short: "Show a domain's state and basic facts (as they stood at --at)",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkAt(at); err != nil {
				return err
			}
			var d domains.Domain
			if err := g.call(cmd.Context(), api.VerbInfo, api.DomainRequest{Domain: args[0], At: at}, &d); err != nil {
				return err
			}
			if g.json {
				return printJSON(cmd.OutOrStdout(), d)
			}
			printInfo(cmd.OutOrStdout(), d)
			return nil
		},
	}
	addAt(cmd, &at)
	addJSON(cmd, g)
	return cmd
}

func newConfigCmd(g *globals) *cobra.Command {
	var asYAML, live bool
	var at string
	cmd := &cobra.Command{
		Use:   "config DOMAIN [--at SEQ|TIME]",
		Short: "Print a domain's configuration (JSON; --yaml for YAML), as the log has it (at --at)",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkAt(at); err != nil {
				return err
			}
			var c domains.Config
			if err := g.call(cmd.Context(), api.VerbConfig, api.DomainRequest{Domain: args[0], At: at, Live: live}, &c); err != nil {
				return err
			}
			if asYAML {
				b, err := yaml.Marshal(c)
				if err != nil {
					return err
				}
				_, err = cmd.OutOrStdout().Write(b)
				return err
			}
			return printJSON(cmd.OutOrStdout(), c)
		},
	}
	cmd.Flags().BoolVar(&asYAML, "yaml", false, "print YAML instead of JSON")
	cmd.Flags().BoolVar(&live, "live", false, "the running guest's config: with the devices attached and detached live")
	addAt(cmd, &at)
	addJSON(cmd, g)
	return cmd
}

func exactArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return usagef("%s takes %d argument(s), got %d (see --help)", cmd.CommandPath(), n, len(args))
		}
		return nil
	}
}
