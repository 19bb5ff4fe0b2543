import Foundation
import Shared
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// SCM_RIGHTS between two real processes, with an independent implementation on the other side
/// (Python's `socket.send_fds` / `socket.recv_fds`).
@Suite(.serialized) struct DescriptorPassingTests {
    static let python = ["/usr/bin/python3", "/usr/local/bin/python3"].first { FileManager.default.isExecutableFile(atPath: $0) }

    /// Starts python3 with `socket` at descriptor 3 (through `ProcessSpawn`, as the supervisor starts workers).
    func runPython(_ script: String, passing socket: CInt) throws -> Child {
        let python = try #require(Self.python, "python3 is needed for this test")
        let pid = try ProcessSpawn.spawn(
            path: python, arguments: ["-c", "import os\n" + script], descriptors: [(socket, 3)],
            environment: ProcessSpawn.currentEnvironment)
        return Child(pid: pid)
    }

    struct Child {
        let pid: pid_t
        /// Waits for the exit (a test may block); returns the exit code.
        func wait() throws -> CInt {
            var status: CInt = 0
            while waitpid(pid, &status, 0) == -1 {
                guard errno == EINTR else { throw Errno(rawValue: errno) }
            }
            return (status >> 8) & 0xff
        }
    }

    @Test func aDescriptorWeSendIsUsableInAnotherProcess() throws {
        let (ours, theirs) = try Syscall.socketPair(type: .seqpacket)
        defer { Syscall.close(ours) }
        var pipeEnds: [CInt] = [0, 0]
        #expect(pipe(&pipeEnds) == 0)
        let process = try runPython(
            """
            import socket; s = socket.socket(fileno=3)
            msg, fds, flags, addr = socket.recv_fds(s, 1024, 4)
            os.write(fds[0], b'written by the child: ' + msg); s.send(b'done')
            """, passing: theirs)
        Syscall.close(theirs)
        try DescriptorPassing.send(descriptor: pipeEnds[1], payload: Array("hello".utf8), over: ours)
        Syscall.close(pipeEnds[1])  // the child holds its own copy now
        var reply = [UInt8](repeating: 0, count: 16)
        #expect(recv(ours, &reply, reply.count, 0) == 4)
        var output = [UInt8](repeating: 0, count: 64)
        let count = read(pipeEnds[0], &output, output.count)
        Syscall.close(pipeEnds[0])
        #expect(String(decoding: output[0..<max(0, count)], as: UTF8.self) == "written by the child: hello")
        #expect(try process.wait() == 0)
    }

    @Test func aDescriptorAnotherProcessSendsArrivesWithItsPayload() throws {
        let (ours, theirs) = try Syscall.socketPair(type: .seqpacket)
        defer { Syscall.close(ours) }
        let process = try runPython(
            """
            import socket; s = socket.socket(fileno=3)
            r, w = os.pipe(); os.write(w, b'through the pipe'); os.close(w)
            socket.send_fds(s, [b'payload-bytes'], [r])
            """, passing: theirs)
        Syscall.close(theirs)
        let received = try #require(try DescriptorPassing.receive(from: ours))
        #expect(received.payload == Array("payload-bytes".utf8))
        let fd = try #require(received.descriptor)
        var output = [UInt8](repeating: 0, count: 64)
        let count = read(fd, &output, output.count)
        Syscall.close(fd)
        #expect(String(decoding: output[0..<max(0, count)], as: UTF8.self) == "through the pipe")
        #expect(try process.wait() == 0)
        // The peer is gone: end of stream.
        #expect(try DescriptorPassing.receive(from: ours) == nil)
    }

    @Test func oneSetOfBuffersServesMessageAfterMessage() throws {
        let (ours, theirs) = try Syscall.socketPair(type: .seqpacket)
        defer { Syscall.close(ours) }
        let process = try runPython(
            """
            import socket; s = socket.socket(fileno=3)
            r, w = os.pipe()
            socket.send_fds(s, [b'a longer payload first'], [r])
            socket.send_fds(s, [b'short'], [w])
            s.send(b'no descriptor')
            """, passing: theirs)
        Syscall.close(theirs)
        let buffers = DescriptorPassing.ReceiveBuffers()
        let first = try #require(try DescriptorPassing.receive(from: ours, using: buffers))
        let second = try #require(try DescriptorPassing.receive(from: ours, using: buffers))
        let third = try #require(try DescriptorPassing.receive(from: ours, using: buffers))
        #expect(first.payload == Array("a longer payload first".utf8))
        #expect(second.payload == Array("short".utf8), "nothing of the longer message before it")
        #expect(third.payload == Array("no descriptor".utf8))
        #expect(third.descriptor == nil, "no descriptor left over from the messages before")
        let (read, write) = (try #require(first.descriptor), try #require(second.descriptor))
        #expect(Glibc.write(write, "x", 1) == 1)
        var byte: UInt8 = 0
        #expect(Glibc.read(read, &byte, 1) == 1 && byte == UInt8(ascii: "x"), "the two ends of one pipe, passed apart")
        Syscall.close(read)
        Syscall.close(write)
        #expect(try process.wait() == 0)
        #expect(try DescriptorPassing.receive(from: ours, waiting: false, using: buffers) == nil, "the peer is gone: end of stream")
    }

    @Test func extraDescriptorsAreClosedAndRefused() throws {
        let (ours, theirs) = try Syscall.socketPair(type: .seqpacket)
        defer { Syscall.close(ours) }
        let process = try runPython(
            """
            import socket; s = socket.socket(fileno=3)
            a, b = os.pipe()
            socket.send_fds(s, [b'two'], [a, b])
            """, passing: theirs)
        Syscall.close(theirs)
        #expect(throws: Errno.messageTooLong) { try DescriptorPassing.receive(from: ours) }
        #expect(try process.wait() == 0)
    }

    /// A batch arrives in one message, each descriptor with its hand-off, read by an independent implementation.
    @Test func aBatchCarriesEachConnectionWithItsDescriptor() throws {
        let (ours, theirs) = try Syscall.socketPair(type: .seqpacket)
        defer { Syscall.close(ours) }
        let users = ["ann", "bob", "cy"]
        var batch = HandoffBatch()
        var pipes: [(read: CInt, write: CInt)] = []
        for user in users {
            let pipe = try Syscall.pipe()
            #expect(Glibc.write(pipe.write, user, user.utf8.count) == user.utf8.count)
            Syscall.close(pipe.write)
            pipes.append(pipe)
            #expect(batch.append(descriptor: pipe.read, payload: try Handoff(route: .stream, userID: user, tokenExpiry: nil).encoded()))
        }
        try batch.send(over: ours)
        pipes.forEach { Syscall.close($0.read) }
        // Python parses the layout on its own and checks each descriptor's pipe holds the user its hand-off names.
        let process = try runPython(
            """
            import socket, struct; s = socket.socket(fileno=3)
            data, fds, flags, _ = socket.recv_fds(s, 65536, 32)
            assert data[0] == 0xBA and data[1] == len(fds) == 3, (data[:2], fds)
            offset = 2
            for fd in fds:
                (length,) = struct.unpack('>H', data[offset:offset + 2]); offset += 2
                handoff = data[offset:offset + length]; offset += length
                assert handoff.endswith(os.read(fd, 64)), (handoff, fd)
            assert offset == len(data)
            """, passing: theirs)
        Syscall.close(theirs)
        #expect(try process.wait() == 0)
    }

    /// What the worker relies on when it is at its open-files limit: the kernel installs the first descriptors it can
    /// and says the rest are cut (`MSG_CTRUNC`); here the receiver's room for `maximumDescriptors` cuts a message of more.
    @Test func descriptorsCutShortAreTheFirstOnesSent() throws {
        let (ours, theirs) = try Syscall.socketPair(type: .seqpacket)
        defer { Syscall.close(ours) }
        let sent = DescriptorPassing.maximumDescriptors + 4
        let process = try runPython(
            """
            import socket; s = socket.socket(fileno=3)
            pipes = [os.pipe() for _ in range(\(sent))]
            for index, (r, w) in enumerate(pipes): os.write(w, str(index).encode())
            socket.send_fds(s, [b'several'], [r for r, w in pipes])
            """, passing: theirs)
        Syscall.close(theirs)
        #expect(try process.wait() == 0)
        let received = try #require(
            try DescriptorPassing.receive(from: ours, maximumDescriptors: DescriptorPassing.maximumDescriptors))
        defer { received.descriptors.forEach(Syscall.close) }
        #expect(received.descriptorsCutShort)
        #expect(received.payload == Array("several".utf8))
        var contents: [String] = []
        for fd in received.descriptors {
            var bytes = [UInt8](repeating: 0, count: 8)
            let count = Glibc.read(fd, &bytes, bytes.count)
            contents.append(String(decoding: bytes[..<max(count, 0)], as: UTF8.self))
        }
        #expect(contents == (0..<DescriptorPassing.maximumDescriptors).map(String.init), "the first ones, in order")
    }

    /// A receiver that takes one descriptor a message (a worker of a release before batches) refuses a batch.
    @Test func aBatchIsRefusedByAReceiverOfOneDescriptorAMessage() throws {
        let (ours, theirs) = try Syscall.socketPair(type: .seqpacket)
        defer {
            Syscall.close(ours)
            Syscall.close(theirs)
        }
        var batch = HandoffBatch()
        let pipe = try Syscall.pipe()
        defer {
            Syscall.close(pipe.read)
            Syscall.close(pipe.write)
        }
        for user in ["a", "b"] {
            #expect(batch.append(descriptor: pipe.read, payload: try Handoff(route: .stream, userID: user, tokenExpiry: nil).encoded()))
        }
        try batch.send(over: ours)
        #expect(throws: Errno.messageTooLong) { try DescriptorPassing.receive(from: theirs) }
    }
}

import SystemPackage
