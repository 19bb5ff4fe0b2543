/// What a supervisor and its workers speak, as one line (`control=1 handoff=2`).
///
/// Both ends are assumed to come from one build, but a reload starts new workers from whatever `sse-worker` is
/// installed by then: the supervisor asks it (`sse-worker --protocol-versions`) before replacing anything,
/// and refuses a reload into a worker that would not understand it (a restart upgrades both).
public enum WireProtocol {
    public static let versions = "control=\(ControlFrame.version) handoff=\(Handoff.version)"

    /// The argument that makes `sse-worker` print `versions` and exit, whatever else it is given.
    public static let askArgument = "--protocol-versions"
}
