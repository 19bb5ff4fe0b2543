import FuzzChecks

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// `sse-fuzz TARGET ARGS...`, one binary for every target in `FuzzTarget`.
///
/// Built by `scripts/fuzz.sh` (`-sanitize=fuzzer -DLIBFUZZER`), it hands ARGS to libFuzzer's driver (corpus
/// directories, `-max_total_time=`...). Built plainly (`swift build`), ARGS are files or directories of inputs
/// replayed once each, so a crash or a disagreement libFuzzer found can be reproduced and debugged without it.
@main
struct FuzzHub {
    /// libFuzzer starts copies of itself (`-merge=1`, `-fork=`, `-jobs=`) with its own arguments only, without the
    /// target's name: they find it here, set by the first.
    static let targetVariable = "SSE_FUZZ_TARGET"

    static func main() {
        var arguments = CommandLine.arguments
        let target: FuzzTarget
        if arguments.count >= 2, let named = FuzzTarget(rawValue: arguments[1]) {
            target = named
            arguments.remove(at: 1)
        } else if let inherited = getenv(targetVariable).flatMap({ FuzzTarget(rawValue: String(cString: $0)) }) {
            target = inherited
        } else {
            let names = FuzzTarget.allCases.map(\.rawValue).joined(separator: "|")
            print("usage: sse-fuzz \(names) [libFuzzer options and corpus directories | inputs to replay]")
            exit(64)
        }
        setenv(targetVariable, target.rawValue, 1)
        #if LIBFUZZER
        exit(LibFuzzer.run(target, arguments: arguments))
        #else
        exit(Replay.run(target, paths: Array(arguments.dropFirst())))
        #endif
    }
}

#if LIBFUZZER
@_silgen_name("LLVMFuzzerRunDriver")
private func LLVMFuzzerRunDriver(
    _ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
    _ testOneInput: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt
) -> CInt

/// The target libFuzzer's C callback checks (it can capture nothing); set once, before the driver starts.
nonisolated(unsafe) private var currentTarget = FuzzTarget.requestHead

private enum LibFuzzer {
    static func run(_ target: FuzzTarget, arguments: [String]) -> CInt {
        currentTarget = target
        // The program name and libFuzzer's options: the target's name is taken out.
        var argumentVector: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
        var argumentCount = CInt(argumentVector.count - 1)
        return argumentVector.withUnsafeMutableBufferPointer { vector in
            var base = vector.baseAddress
            return LLVMFuzzerRunDriver(&argumentCount, &base) { data, size in
                let input = UnsafeRawBufferPointer(start: data, count: size)
                if let finding = currentTarget.check(input) { fatalError("\(currentTarget.rawValue): \(finding)") }
                return 0
            }
        }
    }
}
#endif
