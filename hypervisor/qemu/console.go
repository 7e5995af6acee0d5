package qemu

import (
	"context"
	"fmt"
	"net"
	"time"
)

// DefaultConsoleTimeout bounds OpenConsole when ctx has no deadline.
const DefaultConsoleTimeout = 10 * time.Second

// OpenConsole connects to a guest's serial console socket (Guest.Console,
// Driver.ConsolePath). It retries while the socket is not there yet or
// refuses (QEMU still starting), until ctx ends.
//
// QEMU's socket chardev serves one client at a time: a second connection
// waits until the first closes, and what the guest prints while nobody is
// connected is lost (enable Config.Serial.Log to keep it).
func OpenConsole(ctx context.Context, path string) (net.Conn, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultConsoleTimeout)
		defer cancel()
	}
	var d net.Dialer
	for {
		c, err := d.DialContext(ctx, "unix", path)
		if err == nil {
			return c, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("qemu: console %s: %w (last: %w)", path, ctx.Err(), err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}
