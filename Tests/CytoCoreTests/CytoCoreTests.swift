import Foundation
import Testing
@testable import CytoCore

@Suite struct JSONTests {
    @Test func roundTripsNestedValues() throws {
        let text = #"{"a":[1,2.5,"x\ny",null,true],"b":{"c":-3}}"#
        let v = try JSON.parse(text)
        #expect(v["a"]?.arrayValue?.count == 5)
        #expect(v["a"]?.arrayValue?[1].doubleValue == 2.5)
        #expect(v["a"]?.arrayValue?[2].stringValue == "x\ny")
        #expect(v["b"]?["c"]?.intValue == -3)
        #expect(v.serialized == text)
    }

    @Test func rejectsMalformedText() {
        for bad in ["", "{", "[1,]", "{\"a\":1} x", "nul", "{'a':1}", "NaN", "[Infinity]", "{\"a\" 1}", "[1 2]", "[" + String(repeating: "[", count: 200) + "]"] {
            #expect(throws: CytoError.self, "\(bad.prefix(20))") { try JSON.parse(bad) }
        }
    }

    @Test func parsesBareTopLevelValues() throws {
        #expect(try JSON.parse("1") == .int(1))
        #expect(try JSON.parse(" -2.5 ") == .double(-2.5))
        #expect(try JSON.parse("true") == .bool(true))
    }

    @Test func rejectsEncodedSurrogates() {
        var bytes: [UInt8] = [0x22, 0xED, 0xA0, 0x80, 0x22]
        #expect(throws: CytoError.self) { try JSON.parse(bytes: &bytes) }
    }

    @Test func rejectsInvalidUTF8() {
        var bytes: [UInt8] = [0x22, 0xff, 0xfe, 0x22]
        #expect(throws: CytoError.self) { try JSON.parse(bytes: &bytes) }
    }

    @Test func escapesControlCharactersAndNonFiniteNumbers() {
        let v = JSON.array([.string("\u{1}\t\"\\"), .double(.nan), .float(0.1)])
        #expect(v.serialized == #"["\u0001\t\"\\",null,0.1]"#)
    }
}

@Suite struct CSVTests {
    func tmp(_ name: String) -> String { NSTemporaryDirectory() + "cytocore-\(getpid())-\(name)" }

    @Test func readsQuotedFieldsAndReportsLines() throws {
        let p = tmp("a.csv")
        try "path,Metadata_Note\na.tif,\"x, \"\"y\"\"\"\n\"b\nc.tif\",z\n\nd.tif\n".write(toFile: p, atomically: true, encoding: .utf8)
        defer { unlink(p) }
        let r = try CSVReader(path: p)
        #expect(r.columns == ["path", "Metadata_Note"])
        #expect(try r.next() == ["a.tif", "x, \"y\""])
        #expect(try r.next() == ["b\nc.tif", "z"])
        #expect(r.line == 3)
        do { _ = try r.next(); Issue.record("short record accepted") } catch let e as CytoError {
            #expect(e.line == 6)
            #expect(e.path == p)
        }
    }

    @Test func writerRoundTripsThroughReader() throws {
        let p = tmp("b.csv")
        defer { unlink(p) }
        let w = try CSVWriter(path: p, header: ["a", "b"])
        try w.write(["1,2", "q\"uote"])
        try w.finish()
        let r = try CSVReader(path: p)
        #expect(try r.next() == ["1,2", "q\"uote"])
        #expect(try r.next() == nil)
    }

    @Test func missingFileNamesThePath() {
        #expect(throws: CytoError(.fileNotFound, "cannot open CSV file", path: "/nonexistent.csv")) {
            try CSVReader(path: "/nonexistent.csv")
        }
    }
}

@Suite struct NPYTests {
    @Test func streamedRowsReadBack() throws {
        let p = NSTemporaryDirectory() + "cytocore-\(getpid()).npy"
        defer { unlink(p) }
        let w = try NPYRowWriter(path: p, columns: 3)
        for i in 0..<5 { try w.append([Float(i), Float(i) + 0.5, -Float(i)]) }
        try w.finish()
        let a = try NPY.read(path: p)
        #expect(a.shape == [5, 3])
        #expect(a.values[7] == 2.5)
        let size = try FileManager.default.attributesOfItem(atPath: p)[.size] as! Int
        #expect((size - 5 * 3 * 4) % 64 == 0, "data starts on a 64-byte boundary")
    }
}

@Suite struct RandomTests {
    @Test func purposesAreIndependentAndSeedsRepeat() {
        var a = RandomStream(seed: 7, purpose: "init"), b = RandomStream(seed: 7, purpose: "init")
        var c = RandomStream(seed: 7, purpose: "noise")
        let xa = (0..<4).map { _ in a.next() }, xb = (0..<4).map { _ in b.next() }, xc = (0..<4).map { _ in c.next() }
        #expect(xa == xb)
        #expect(xa != xc)
        let restored = RandomStream(stateWords: a.stateWords)
        var r = restored
        #expect(r.next() == a.next())
    }

    @Test func normalHasUnitMoments() {
        var g = RandomStream(seed: 1, purpose: "t")
        var x = [Float](repeating: 0, count: 100_000)
        g.fillNormal(&x)
        let mean = x.reduce(0, +) / Float(x.count)
        let variance = x.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Float(x.count)
        #expect(abs(mean) < 0.02)
        #expect(abs(variance - 1) < 0.02)
    }
}

@Suite struct SystemHelperTests {
    @Test func crc32MatchesZlibsKnownValues() {
        // The CRC of a PNG IEND chunk (type, no data), and the standard check value of "123456789".
        #expect(Array("IEND".utf8).withUnsafeBytes { crc32($0) } == 0xAE42_6082)
        #expect(Array("123456789".utf8).withUnsafeBytes { crc32($0) } == 0xCBF4_3926)
        #expect([UInt8]().withUnsafeBytes { crc32($0) } == 0)
    }

    @Test func writeAllDeliversEveryByteOrTheErrno() throws {
        var fds: [Int32] = [-1, -1]
        try #require(pipe(&fds) == 0)
        defer { close(fds[0]) }
        let bytes = (0..<5000).map { UInt8(truncatingIfNeeded: $0) }
        #expect(writeAll(fd: fds[1], bytes) == nil)
        close(fds[1])
        var got: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1024)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fds[0], $0.baseAddress, $0.count) }
            if n <= 0 { break }
            got += chunk[0..<n]
        }
        #expect(got == bytes)
        #expect(writeAll(fd: -1, [1]) == EBADF)
    }

    @Test func monotonicClockAdvances() {
        let n0 = MonotonicClock.nanoseconds(), s0 = MonotonicClock.seconds()
        var x = 0.0
        for i in 0..<100_000 { x += Double(i).squareRoot() }
        #expect(x > 0)
        #expect(MonotonicClock.nanoseconds() >= n0 && MonotonicClock.seconds() >= s0)
        #expect(abs(Double(n0) * 1e-9 - s0) < 1)
        #expect(MonotonicClock.threadCPUSeconds() > 0)
    }
}
