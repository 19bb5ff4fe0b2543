import Shared

/// The connections this worker holds per client address (`--max-worker-conns-per-ip`): the supervisor's own
/// per-address limits see a connection only until it hands it over, so without this one address holding many
/// users' tokens could fill a worker's descriptors, and every stream on it would lose. On the worker's loop.
final class ClientAddressTally {
    let limit: Int
    private var held: [ClientAddressKey: Int] = [:]

    init(limit: Int) {
        self.limit = limit
    }

    /// Counts one more connection from `key`, or refuses (false) when the address is at the limit. A stream that
    /// moves here on reload is counted whatever the limit (`enforcing: false`): it is already open, and refusing it
    /// would write an error into the middle of its event stream.
    func admit(_ key: ClientAddressKey, enforcing: Bool = true) -> Bool {
        let count = held[key, default: 0]
        guard count < limit || !enforcing else { return false }
        held[key] = count + 1
        return true
    }

    /// A connection from `key` closed.
    func release(_ key: ClientAddressKey) {
        guard let count = held[key] else { return }
        held[key] = count > 1 ? count - 1 : nil
    }

    var addresses: Int { held.count }
}
