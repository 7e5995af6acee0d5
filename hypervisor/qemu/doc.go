// Package qemu runs vmledger guests under QEMU (qemu-system-x86_64, 7.2 as
// shipped by Debian) with KVM or TCG. It implements domains.Driver and
// domains.Guest.
//
// The parts, one per file:
//
//   - driver.go: Options, New, accelerator choice.
//   - cmdline.go, cmdline_devices.go: the QEMU command line, a pure function
//     of the start spec, tested against golden files.
//   - steps.go, start.go: Start as named steps, each with an undo run in
//     reverse when a later step fails.
//   - guest.go, events.go: the running guest: QMP commands and events.
//   - process.go: noticing that QEMU exited, for a child (wait) and for a
//     process the agent re-attached to after a restart (pidfd).
//   - attach.go: finding a QEMU that outlived the agent.
//   - console.go: the serial console socket.
//
// QEMU is started in its own session with its output in a log file, so it
// survives the agent: the agent can stop, restart and Attach again.
// docs/qemu.md explains the command line and the lifecycle.
package qemu
