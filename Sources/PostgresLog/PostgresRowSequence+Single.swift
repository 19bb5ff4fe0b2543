import PostgresNIO

extension PostgresRowSequence {
    /// The first row's one column, nil for no row (any further rows are read and dropped).
    func single<Value: PostgresDecodable & Sendable>(_ type: Value.Type) async throws -> Value? {
        var first: Value?
        for try await value in decode(Value.self) where first == nil { first = value }
        return first
    }
}
