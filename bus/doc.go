// Package bus puts the event log on NATS and takes commands from it.
//
// Pieces, each usable on its own:
//
//   - StartEmbedded runs nats-server in-process, on loopback by default.
//   - Connect dials an external server or cluster with the reconnect policy
//     the relay's guarantees depend on (see Connect).
//   - Relay publishes committed events, in sequence order, at least once.
//   - HistoryService answers "what did I miss" requests from the log.
//   - CommandService serves verbs through nats.go's micro framework.
//   - Client calls verbs, pages history and follows the live stream
//     exactly once, in order.
//
// The package never imports the store: it declares the few methods it
// reads through (EventReader, RelayStore) and the agent wires them up.
// docs/bus.md is the wire contract.
package bus
