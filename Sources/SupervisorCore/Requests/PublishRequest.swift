import Foundation
import NIOCore
import Shared

/// A publish body (`POST /api/sse/publish`), validated: where the event goes, its name, and its data as compact JSON.
///
/// `{"event": name, "topic": name}` to a topic's subscribers, `{"event": name, "userId": id}` to one user's streams
/// (a non-empty string, or an integer), `{"event": name}` to everyone; `data` is any JSON value, `null` if absent.
public struct PublishRequest: Sendable, Equatable {
    public var target: PublishTarget
    public var event: String
    /// `data` re-encoded by `HubJSON.encode`, as the streams send it.
    public var data: String

    public init(target: PublishTarget, event: String, data: String) {
        self.target = target
        self.event = event
        self.data = data
    }

    /// The request in `body`, or the error to answer, saying what was wrong. Checked in this order: JSON, an object,
    /// `event`, `topic` and `userId` not both, then whichever of them is present.
    public static func parse(_ body: ByteBuffer) -> Result<PublishRequest, APIError> {
        let json = Data(body.readableBytesView)
        guard let fields = try? JSONDecoder().decode([String: JSONValue].self, from: json) else {
            let isJSON = (try? JSONDecoder().decode(JSONValue.self, from: json)) != nil
            return .failure(isJSON ? APIError(status: 400, "body must be a JSON object") : .malformedJSON)
        }
        guard case .string(let event)? = fields["event"], HubName.isValidEvent(event) else {
            return .failure(APIError(status: 400, "event must be 1-64 characters [A-Za-z0-9_.:-]"))
        }
        let target: PublishTarget
        switch (fields["topic"], fields["userId"]) {
        case (.some, .some):
            return .failure(APIError(status: 400, "topic and userId cannot be combined"))
        case (.some(let topic), nil):
            guard case .string(let name) = topic, HubName.isValidTopic(name) else {
                return .failure(APIError(status: 400, "topic must be 1-128 characters [A-Za-z0-9_.:-]"))
            }
            target = .topic(name)
        case (nil, .some(let user)):
            guard let userID = user.idString, userID.utf8.count <= Handoff.maximumUserIDBytes else {
                return .failure(
                    APIError(
                        status: 400,
                        "userId must be a non-empty string (at most \(Handoff.maximumUserIDBytes) bytes) or an integer"))
            }
            target = .user(userID)
        case (nil, nil):
            target = .everyone
        }
        return .success(PublishRequest(target: target, event: event, data: HubJSON.encode(fields["data"] ?? .null)))
    }
}
