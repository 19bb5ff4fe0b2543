import Foundation
import Shared
import Testing

/// The accept thread reads the usual token's claims without `JSONDecoder`; where it gives up, the decoder reads them.
@Suite struct FlatClaimsReaderTests {
    static func decoded(_ json: String) -> HubClaims? {
        try? TokenVerifier.claimsDecoder(publisherClaim: .role).decode(HubClaims.self, from: Data(json.utf8))
    }

    @Test(arguments: [
        #"{"sub":"user-42","iat":1700000000,"exp":4102444800}"#,
        #" { "user" : {"id": 7, "name":"Ann"} , "role":"publisher", "aud":"app", "iss":"https://id.example", "nbf":-5 } "#,
        #"{"sub":"","id":-0,"user":"not-an-object","role":3,"iss":false,"flag":true,"gone":null}"#,
        #"{"user":{},"aud":null}"#,
        #"{}"#,
        #"{"sub":"u","exp":1764822000.123456,"iat":1.5e9,"nbf":-2E-3}"#,
        #"{"exp":1e300}"#, #"{"exp":1e-300}"#,
    ])
    func readsTheUsualClaimsAsTheDecoderDoes(_ json: String) throws {
        let read = try #require(FlatClaimsReader.read(Array(json.utf8)), "the reader gives up on a usual token")
        #expect(read == Self.decoded(json))
    }

    @Test func readsTheUserAndThePublisherClaim() throws {
        let read = try #require(FlatClaimsReader.read(Array(#"{"user":{"id":7},"role":"publisher","exp":1}"#.utf8)))
        #expect(read.userID == "7" && read.holdsPublisherClaim && read.exp?.value == Date(timeIntervalSince1970: 1))
    }

    /// What it cannot be sure of goes to the decoder.
    @Test(arguments: [
        #"{"sub":"a","sub":"b"}"#, #"{"sub":"a\u0041"}"#, "{\"sub\":\"\u{e9}\"}", #"{"sub":1.0}"#, #"{"exp":1e400}"#,
        #"{"sub":"u","exp":91e-10223372036854775808}"#, #"{"exp":1e0001}"#, #"{"exp":25e-400}"#, #"{"exp":1e-310}"#,
        #"{"exp":0.0}"#,
        #"{"exp":1.}"#, #"{"exp":.5}"#, #"{"exp":01}"#, #"{"exp":1e}"#,
        #"{"exp":"1"}"#, #"{"exp":null}"#, #"{"aud":["a","b"]}"#, #"{"roles":["x"]}"#, #"{"meta":{"a":1}}"#,
        #"{"user":{"id":{"n":1}}}"#, #"{"user":{"id":4e2}}"#, #"{"user":{"id":1.5}}"#, #"{"id":9223372036854775808}"#, #"{"id":012}"#, #"{"sub":"a"} x"#, #"["sub"]"#, "",
    ])
    func givesUpOnWhatItCannotBeSureOf(_ json: String) {
        #expect(FlatClaimsReader.read(Array(json.utf8)) == nil)
    }
}
