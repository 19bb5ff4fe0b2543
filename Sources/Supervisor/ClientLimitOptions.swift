import ArgumentParser
import Shared

/// `--max-conns-per-ip` and `--conn-rate-per-ip`: the limits per client address (docs/operations.md,
/// "Limits per client address"). Both off by default: behind a reverse proxy every client has the proxy's
/// address, so they are for a supervisor that clients reach directly.
struct ClientLimitOptions: ParsableArguments {
    @Option(help: "Connections one client address (IPv4, or IPv6 /64) may have waiting for their request head at once; over it: 429. 0: no limit.")
    var maxConnsPerIp: Int = 0

    @Option(help: "New connections one client address (IPv4, or IPv6 /64) may open a second, in bursts of as many; over it: 429. 0: no limit.")
    var connRatePerIp: Int = 0

    func validate() throws {
        guard maxConnsPerIp >= 0 else { throw ValidationError("--max-conns-per-ip must not be negative") }
        guard connRatePerIp >= 0 else { throw ValidationError("--conn-rate-per-ip must not be negative") }
    }

    var policy: ClientAddressLimiter.Policy {
        .init(maximumHeld: maxConnsPerIp > 0 ? maxConnsPerIp : nil, newPerSecond: connRatePerIp > 0 ? connRatePerIp : nil)
    }
}
