package domains_test

import (
	"os"
	"sort"
	"strings"
	"testing"

	"github.com/vmledger/vmledger/domains"
)

// docs/architecture.md prints the lifecycle table; this keeps it equal to
// the one the code uses.
func TestArchitectureDocStateTable(t *testing.T) {
	section := docSection(t, "architecture.md", "## Lifecycle state table")
	var fromDoc []string
	for _, line := range strings.Split(section, "\n") {
		cells := strings.Split(strings.Trim(line, "| "), "|")
		if len(cells) != 3 || strings.TrimSpace(cells[0]) == "from" || strings.HasPrefix(strings.TrimSpace(cells[0]), "---") {
			continue
		}
		on, to := strings.TrimSpace(cells[1]), strings.TrimSpace(cells[2])
		for _, from := range strings.Split(cells[0], ",") {
			from = strings.TrimSpace(from)
			dest := to
			if to == "(unchanged)" || to == "(removed)" {
				dest = from
			}
			fromDoc = append(fromDoc, from+" --"+on+"-> "+dest)
		}
	}
	var fromCode []string
	for _, tr := range domains.Transitions() {
		fromCode = append(fromCode, string(tr.From)+" --"+string(tr.On)+"-> "+string(tr.To))
	}
	sort.Strings(fromDoc)
	sort.Strings(fromCode)
	if strings.Join(fromDoc, "\n") != strings.Join(fromCode, "\n") {
		t.Fatalf("docs/architecture.md's table:\n%s\n\nthe code's:\n%s", strings.Join(fromDoc, "\n"), strings.Join(fromCode, "\n"))
	}
}

// docSection returns a section of docs/<file>, from its heading to the
// next one of the same level.
func docSection(t *testing.T, file, heading string) string {
	t.Helper()
	b, err := os.ReadFile("../docs/" + file)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	start := strings.Index(doc, heading)
	if start < 0 {
		t.Fatalf("docs/%s has no section %q", file, heading)
	}
	section := doc[start+3:]
	if end := strings.Index(section, "\n## "); end >= 0 {
		section = section[:end]
	}
	return section
}
