import Shared

/// Across hosts (`--hub-wide-users`), a subscribe or unsubscribe is answered only once the supervisor says the change
/// is committed to the hub's log: from then on every host applies it before any event published later, so a client
/// that publishes right after its subscribe is answered cannot miss its own event on another host.
///
/// Each request waiting for that is one entry here, keyed by the token the supervisor echoes (`awaitChangesLogged`,
/// `changesLogged`). The supervisor answers every token while its control channel lives; without the channel the
/// worker is on its way out, and the requests end with their connections.
struct ChangeAcknowledgements {
    private var waiting: [UInt64: (_ committed: Bool) -> Void] = [:]
    private var lastToken: UInt64 = 0

    /// Registers `answer` and returns the message that asks the supervisor for it.
    mutating func ask(_ answer: @escaping (_ committed: Bool) -> Void) -> ControlMessage {
        lastToken &+= 1
        waiting[lastToken] = answer
        return .awaitChangesLogged(lastToken)
    }

    /// The supervisor's answer; one it never asked for (or already answered) is ignored.
    mutating func answered(_ token: UInt64, committed: Bool) {
        waiting.removeValue(forKey: token)?(committed)
    }
}
