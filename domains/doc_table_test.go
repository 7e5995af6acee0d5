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
	for _, cells := range docRows(section, 3) {
		on, to := cells[1], cells[2]
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

// docs/migration.md prints the migration transition table; this keeps it
// equal to domains.MigrationTable().
func TestMigrationDocTable(t *testing.T) {
	section := docSection(t, "migration.md", "## Transition table")
	var fromDoc []string
	for _, cells := range docRows(section, 4) {
		role, to := cells[0], cells[2]
		kind := strings.Fields(cells[3])[0]
		for _, from := range strings.Split(cells[1], ",") {
			fromDoc = append(fromDoc, role+" "+strings.TrimSpace(from)+" -> "+to+" "+kind)
		}
	}
	var fromCode []string
	for _, r := range domains.MigrationTable() {
		kind := "step"
		if r.Recovery {
			kind = "recovery"
		}
		fromCode = append(fromCode, string(r.Role)+" "+string(r.From)+" -> "+string(r.To)+" "+kind)
	}
	sort.Strings(fromDoc)
	sort.Strings(fromCode)
	if strings.Join(fromDoc, "\n") != strings.Join(fromCode, "\n") {
		t.Fatalf("docs/migration.md's table:\n%s\n\nthe code's:\n%s", strings.Join(fromDoc, "\n"), strings.Join(fromCode, "\n"))
	}
}

// docRows returns the trimmed cells of a markdown table's body rows that
// have n cells; the header row and the separator are skipped.
func docRows(section string, n int) [][]string {
	var rows [][]string
	header := true
	for _, line := range strings.Split(section, "\n") {
		if !strings.HasPrefix(line, "|") {
			header = true
			continue
		}
		cells := strings.Split(strings.Trim(line, "| "), "|")
		if len(cells) != n || header || strings.HasPrefix(strings.TrimSpace(cells[0]), "---") {
			header = header && !strings.HasPrefix(strings.TrimSpace(cells[0]), "---")
			continue
		}
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		rows = append(rows, cells)
	}
	return rows
}
