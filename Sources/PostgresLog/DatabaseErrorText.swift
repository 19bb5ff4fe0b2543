import PostgresNIO

/// What a database error says, for logs and health: PostgresNIO's own description of `PSQLError` is a fixed
/// sentence (it keeps queries and their values out of logs), so this says which kind, what the server said
/// (its SQLSTATE and message), or the network error beneath; never a query or a bound value.
public enum DatabaseErrorText {
    public static func describe(_ error: any Error) -> String {
        guard let error = error as? PSQLError else { return "\(error)" }
        var text = "\(error.code)"
        if let info = error.serverInfo {
            text += ": \(info[.sqlState] ?? "?") \(info[.message] ?? "")"
        } else if let underlying = error.underlying {
            text += ": \(underlying)"
        }
        return text
    }
}
