import Foundation
import NIOCore
import Shared

/// The body of a subscribe or unsubscribe: a JSON object whose `topics` is an array of at most
/// `maximumTopics` valid topic names (`HubName.isValidTopic`).
enum TopicsRequestBody {
    static let maximumTopics = 100

    /// The topics, in the order given; `.malformedJSON` when the body is not JSON, `.invalidTopics` when it is
    /// JSON of another shape.
    static func parse(_ body: ByteBuffer) -> Result<[String], APIError> {
        let request: JSONValue
        do {
            request = try JSONDecoder().decode(JSONValue.self, from: Data(body.readableBytesView))
        } catch {
            return .failure(.malformedJSON)
        }
        guard case .object(let fields) = request, case .array(let values)? = fields["topics"], values.count <= maximumTopics else {
            return .failure(.invalidTopics)
        }
        var topics: [String] = []
        topics.reserveCapacity(values.count)
        for value in values {
            guard case .string(let topic) = value, HubName.isValidTopic(topic) else { return .failure(.invalidTopics) }
            topics.append(topic)
        }
        return .success(topics)
    }
}
