import Foundation
import Shared

/// `GET /api/sse/presence?topic=T` or `?userId=U`, with `limit` (1-1000, default 100) and `cursor` (the `nextCursor`
/// of the page before), validated. The error says what was wrong.
struct PresenceRequest: Sendable, Equatable {
    var subject: PresenceQuery.Subject
    var cursor: String?
    var limit: Int

    static let defaultLimit = 100
    static let limits = 1...1000

    static func parse(target: String) -> Result<PresenceRequest, APIError> {
        let topic = TokenLocation.queryValue("topic", in: target)
        let userID = TokenLocation.queryValue("userId", in: target)
        let subject: PresenceQuery.Subject
        switch (topic, userID) {
        case (let topic?, nil):
            guard HubName.isValidTopic(topic) else { return .failure(APIError(status: 400, "topic must be 1-128 characters [A-Za-z0-9_.:-]")) }
            subject = .topic(topic)
        case (nil, let userID?):
            guard !userID.isEmpty, userID.utf8.count <= Handoff.maximumUserIDBytes else {
                return .failure(APIError(status: 400, "userId must be 1 to \(Handoff.maximumUserIDBytes) bytes"))
            }
            subject = .user(userID)
        default:
            return .failure(APIError(status: 400, "ask about one topic (?topic=) or one user (?userId=)"))
        }
        var limit = defaultLimit
        if let text = TokenLocation.queryValue("limit", in: target) {
            guard let value = Int(text), limits.contains(value) else {
                return .failure(APIError(status: 400, "limit must be \(limits.lowerBound) to \(limits.upperBound)"))
            }
            limit = value
        }
        let cursor = TokenLocation.queryValue("cursor", in: target)
        if let cursor, cursor.isEmpty || cursor.utf8.count > Handoff.maximumUserIDBytes {
            return .failure(APIError(status: 400, "cursor must be the nextCursor of the page before"))
        }
        return .success(PresenceRequest(subject: subject, cursor: cursor, limit: limit))
    }
}
