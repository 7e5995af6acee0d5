package bus

import (
	"strings"

	"github.com/rs/zerolog"

	"github.com/vmledger/vmledger/domains"
)

// replyAllowed says whether the agent may answer on reply, the reply
// subject a requester chose. The server checks what a client publishes,
// not the reply subject it names, and the agent may publish anywhere: a
// request whose reply is vmledger.peer.<host>.migrate-cancel, an event
// subject or $JS.API... would make the agent publish its answer there for
// the requester (a confused deputy). Replies go to inboxes, never to our
// own request and event spaces nor to the server's APIs.
func replyAllowed(reply string) bool {
	return !strings.HasPrefix(reply, subjectRoot+".") && !strings.HasPrefix(reply, "$")
}

// refuseReply logs a request dropped because of its reply subject; the
// requester gets no answer, as for any publish to a subject it may not use.
func refuseReply(log zerolog.Logger, what, reply string) {
	log.Warn().Str("verb", what).Str("reply", domains.Quote(reply)).
		Msg("request dropped: its reply subject is not an inbox (the agent does not publish on vmledger.> or $... for a requester)")
}
