import Foundation
import NIOCore
import Shared

/// A publish, validated: what the publishers' API accepts, with the error that says what was wrong otherwise.
public struct PublishRequest: Sendable, Equatable {
    public var target: PublishTarget
    public var event: String
    /// The event's data, as JSON text (`null` when the body has none).
    public var data: String

    public init(target: PublishTarget, event: String, data: String) {
        self.target = target
        self.event = event
        self.data = data
    }

    public static func parse(_ body: ByteBuffer) -> Result<PublishRequest, APIError> {
        guard let fields = try? JSONDecoder().decode([String: JSONValue].self, from: Data(body.readableBytesView)) else {
            let isJSON = (try? JSONDecoder().decode(JSONValue.self, from: Data(body.readableBytesView))) != nil
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
                    APIError(status: 400, "userId must be a non-empty string (at most \(Handoff.maximumUserIDBytes) bytes) or an integer"))
            }
            target = .user(userID)
        case (nil, nil):
            target = .everyone
        }
        return .success(PublishRequest(target: target, event: event, data: HubJSON.encode(fields["data"] ?? .null)))
    }
}
