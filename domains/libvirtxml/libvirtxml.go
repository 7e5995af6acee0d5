// Package libvirtxml imports a libvirt domain XML (virsh dumpxml, or a
// file written for virsh define) into a vmledger config, for the subset
// vmledger models: name, uuid, memory (with units, and maxMemory slots),
// vcpu, os type/kernel/initrd/cmdline/boot, features, clock (offset,
// adjustment, basis), on_crash, and the devices disk, interface, serial
// and console. Everything else is refused, all of it at once: the error
// lists every element and attribute that has no vmledger equivalent, so
// one edit fixes the file instead of one per try.
//
// What is dropped without a word, because it is not part of the guest's
// configuration: <title>, <description>, <metadata>, <emulator> (the agent
// has --qemu), runtime-only state of dumpxml (the id attribute, <alias>,
// <resource>, seclabel type none) and device <address> elements (vmledger
// assigns its own PCI slots; the guest may see devices elsewhere).
//
// Input is bounded (MaxBytes) and parsed with encoding/xml, which neither
// reads DTDs nor expands entities: an external entity can never be
// fetched and there is no entity expansion to blow up. A DOCTYPE is
// refused outright, since libvirt's own files never carry one. The
// package is pure: bytes in, a config or an error out.
package libvirtxml

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/vmledger/vmledger/domains"
)

// MaxBytes bounds the XML accepted; a real domain XML is a few KiB.
const MaxBytes = 1 << 20

// UnmappedError lists everything in the XML vmledger cannot represent.
type UnmappedError struct {
	Items []string
}

func (e *UnmappedError) Error() string {
	return fmt.Sprintf("libvirt XML: %d thing(s) vmledger cannot map (remove or change them):\n  - %s",
		len(e.Items), strings.Join(e.Items, "\n  - "))
}

// node is one element, kept generically so that whatever the mapping
// does not consume can be reported.
type node struct {
	name     string
	attrs    []xml.Attr
	text     string
	children []*node
	path     string
	used     map[string]bool // attributes consumed
	seen     bool            // element consumed
}

// Convert maps a libvirt domain XML to a vmledger config. The config is
// not validated here beyond what the mapping needs; the agent validates it
// at define, as for any other file.
func Convert(data []byte) (domains.Config, error) {
	if len(data) > MaxBytes {
		return domains.Config{}, domains.Errorf(domains.CodeInvalid, "libvirt XML: %d bytes, more than the %d a domain XML may have", len(data), MaxBytes)
	}
	root, err := parse(data)
	if err != nil {
		return domains.Config{}, domains.Errorf(domains.CodeInvalid, "libvirt XML: %w", err)
	}
	m := &mapper{}
	cfg := m.domain(root)
	m.leftovers(root)
	if len(m.bad) > 0 {
		return domains.Config{}, domains.Errorf(domains.CodeInvalid, "%w", &UnmappedError{Items: m.bad})
	}
	return cfg, nil
}

// Unmapped returns the list of unmappable items of an error from
// Convert, or nil.
func Unmapped(err error) []string {
	var u *UnmappedError
	if errors.As(err, &u) {
		return u.Items
	}
	return nil
}

func parse(data []byte) (*node, error) {
	dec := xml.NewDecoder(bytes.NewReader(data))
	dec.Strict = true
	var stack []*node
	var root *node
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		switch t := tok.(type) {
		case xml.Directive:
			return nil, fmt.Errorf("a <!%s> directive: libvirt XML has no DTD, and none is read", firstWord(t))
		case xml.StartElement:
			if len(stack) >= 32 {
				return nil, fmt.Errorf("elements nested deeper than 32")
			}
			n := &node{name: t.Name.Local, attrs: t.Attr, used: map[string]bool{}}
			if len(stack) == 0 {
				if root != nil {
					return nil, fmt.Errorf("a second top-level element <%s>", n.name)
				}
				root, n.path = n, n.name
			} else {
				p := stack[len(stack)-1]
				n.path = p.path + "/" + n.name
				p.children = append(p.children, n)
			}
			stack = append(stack, n)
		case xml.EndElement:
			stack = stack[:len(stack)-1]
		case xml.CharData:
			if len(stack) > 0 {
				stack[len(stack)-1].text += string(t)
			}
		}
	}
	if root == nil {
		return nil, fmt.Errorf("no <domain> element")
	}
	return root, nil
}

func firstWord(b []byte) string {
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return ""
	}
	return f[0]
}

// attr returns an attribute's value and marks it consumed.
func (n *node) attr(name string) string {
	for _, a := range n.attrs {
		if a.Name.Local == name {
			n.used[name] = true
			return a.Value
		}
	}
	return ""
}

func (n *node) hasAttr(name string) bool {
	for _, a := range n.attrs {
		if a.Name.Local == name {
			return true
		}
	}
	return false
}

// child returns the first child element of that name, marked consumed.
func (n *node) child(name string) *node {
	for _, c := range n.children {
		if c.name == name {
			c.seen = true
			return c
		}
	}
	return nil
}

func (n *node) all(name string) []*node {
	var out []*node
	for _, c := range n.children {
		if c.name == name {
			c.seen = true
			out = append(out, c)
		}
	}
	return out
}

func (n *node) value() string { return strings.TrimSpace(n.text) }

// ignore marks a subtree consumed: dropped on purpose (see the package doc).
func (n *node) ignore() {
	n.seen = true
	for _, a := range n.attrs {
		n.used[a.Name.Local] = true
	}
	for _, c := range n.children {
		c.ignore()
	}
}

type mapper struct {
	bad []string
}

func (m *mapper) refuse(n *node, format string, a ...any) {
	m.bad = append(m.bad, n.path+": "+fmt.Sprintf(format, a...))
}

// leftovers reports every element and attribute the mapping did not
// consume, in document order.
func (m *mapper) leftovers(n *node) {
	if !n.seen {
		m.refuse(n, "element <%s> has no vmledger equivalent%s", n.name, describe(n))
		return
	}
	for _, a := range n.attrs {
		if !n.used[a.Name.Local] {
			m.refuse(n, "attribute %s=%q has no vmledger equivalent", a.Name.Local, a.Value)
		}
	}
	for _, c := range n.children {
		m.leftovers(c)
	}
}

// describe names an element by its telling attribute (type, name, model).
func describe(n *node) string {
	for _, k := range []string{"type", "name", "model", "device"} {
		for _, a := range n.attrs {
			if a.Name.Local == k {
				return fmt.Sprintf(" (%s=%q)", k, a.Value)
			}
		}
	}
	return ""
}
