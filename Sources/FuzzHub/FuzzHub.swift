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
    static func main() {
        let arguments = CommandLine.arguments
        guard arguments.count >= 2, let target = FuzzTarget(rawValue: arguments[1]) else {
            let names = FuzzTarget.allCases.map(\.rawValue).joined(separator: "|")
            print("usage: sse-fuzz \(names) [libFuzzer options and corpus directories | inputs to replay]")
            exit(64)
        }
        #if LIBFUZZER
        exit(LibFuzzer.run(target, arguments: arguments))
        #else
        exit(Replay.run(target, paths: Array(arguments.dropFirst(2))))
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
        // libFuzzer sees the program name and the options, not the target's name.
        var argumentVector: [UnsafeMutablePointer<CChar>?] = ([arguments[0]] + arguments.dropFirst(2)).map { strdup($0) } + [nil]
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
