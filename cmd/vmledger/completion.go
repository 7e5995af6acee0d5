package main

import (
	"context"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/vmledger/vmledger/domains"
	"github.com/vmledger/vmledger/domains/api"
)

// completeTimeout bounds how long a TAB waits for the agent: a shell that
// hangs on completion is worse than one that offers nothing.
const completeTimeout = 2 * time.Second

// completionStates are the states list --state accepts, as virsh names them.
var completionStates = []domains.State{domains.StateRunning, domains.StatePaused, domains.StateShutoff, domains.StateShutdown, domains.StateCrashed}

// registerCompletions wires shell completion (cobra's "completion bash|zsh|
// fish|powershell" command and its hidden __complete): verbs come from the
// command tree; a DOMAIN argument from the agent, asked with a short
// deadline and silent on failure (also for --domain); --state and --type from the model's
// own lists. It runs after every AddCommand, so a verb whose usage line
// starts "VERB DOMAIN" gets domain completion without registering it.
func registerCompletions(root *cobra.Command, g *globals) {
	root.CompletionOptions.HiddenDefaultCmd = false
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if takesDomain(c) && c.ValidArgsFunction == nil {
			c.ValidArgsFunction = func(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
				if len(args) > 0 {
					return nil, cobra.ShellCompDirectiveDefault // later arguments: files, IDs
				}
				return g.domainNames(cmd.Context(), toComplete), cobra.ShellCompDirectiveNoFileComp
			}
		}
		if f := c.Flags().Lookup("state"); f != nil && f.Value.Type() == "string" {
			_ = c.RegisterFlagCompletionFunc("state", fixedCompletion(statesAsStrings()))
		}
		if f := c.Flags().Lookup("domain"); f != nil && f.Value.Type() == "string" {
			_ = c.RegisterFlagCompletionFunc("domain", func(cmd *cobra.Command, _ []string, toComplete string) ([]string, cobra.ShellCompDirective) {
				return g.domainNames(cmd.Context(), toComplete), cobra.ShellCompDirectiveNoFileComp
			})
		}
		if f := c.Flags().Lookup("type"); f != nil {
			_ = c.RegisterFlagCompletionFunc("type", fixedCompletion(typesAsStrings()))
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
}

// takesDomain reports whether the command's first argument is a domain
// name or UUID, as its usage line ("start DOMAIN", ...) says.
func takesDomain(c *cobra.Command) bool {
	f := strings.Fields(c.Use)
	return len(f) > 1 && f[1] == "DOMAIN"
}

func fixedCompletion(all []string) func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
	return func(_ *cobra.Command, _ []string, toComplete string) ([]string, cobra.ShellCompDirective) {
		// --type takes a comma-separated list: complete its last element.
		head := ""
		if i := strings.LastIndexByte(toComplete, ','); i >= 0 {
			head, toComplete = toComplete[:i+1], toComplete[i+1:]
		}
		var out []string
		for _, s := range all {
			if strings.HasPrefix(s, toComplete) {
				out = append(out, head+s)
			}
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}

func statesAsStrings() []string {
	out := make([]string, len(completionStates))
	for i, s := range completionStates {
		out[i] = string(s)
	}
	return out
}

func typesAsStrings() []string {
	var out []string
	for _, t := range domains.Types() {
		out = append(out, string(t))
	}
	return out
}

// domainNames asks the agent for its domains' names; any failure (no
// agent, refused credentials, the deadline) completes nothing.
func (g *globals) domainNames(ctx context.Context, prefix string) []string {
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, cancel := context.WithTimeout(ctx, completeTimeout)
	defer cancel()
	saved := g.timeout
	g.timeout = min(g.timeout, completeTimeout)
	defer func() { g.timeout = saved }()
	var rep api.ListReply
	if err := g.call(ctx, api.VerbList, api.ListRequest{}, &rep); err != nil {
		return nil
	}
	var out []string
	for _, d := range rep.Domains {
		if strings.HasPrefix(d.Name, prefix) {
			out = append(out, d.Name)
		}
	}
	return out
}
