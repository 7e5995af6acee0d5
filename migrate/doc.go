// Package migrate is vmledger's save image: the domain's config as the log
// recorded it and QEMU's migration stream, framed, compressed and checked,
// so that a restore refuses a torn or damaged image before anything starts.
//
// It needs no agent: Writer and Reader work on files and streams, Save and
// Restore on anything that streams QEMU's state out or in (a *qemu.Guest).
// The format is written down byte by byte in docs/migrate.md.
//
// The framing follows VFIO migration v2's data phase (every record
// flagged and length-prefixed, an explicit end of stream); the image is
// written under a partial magic that is replaced by the final one only
// after everything else is on disk (fsync), so a save cut short at any
// point leaves a file that no reader accepts.
package migrate
