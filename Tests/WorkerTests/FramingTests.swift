import Testing
@testable import Worker

@Suite struct FramingTests {
    func frame(_ text: String, max: Int = 100, chunk: Int) -> [LineFramer.Event] {
        var f = LineFramer(maxLineBytes: max)
        var events: [LineFramer.Event] = []
        let bytes = Array(text.utf8)
        var i = 0
        while i < bytes.count {
            let j = Swift.min(i + chunk, bytes.count)
            bytes[i..<j].withUnsafeBytes { f.feed($0) { events.append($0) } }
            i = j
        }
        f.finish { events.append($0) }
        return events
    }

    @Test func splitsLinesAcrossAnyChunkBoundary() {
        let text = "ab\r\n\ncd\nlast"
        let expected: [LineFramer.Event] = [
            .line(Array("ab".utf8), number: 1), .line([], number: 2),
            .line(Array("cd".utf8), number: 3), .line(Array("last".utf8), number: 4),
        ]
        for chunk in 1...text.utf8.count { #expect(frame(text, chunk: chunk) == expected, "chunk \(chunk)") }
    }

    @Test func reportsOverlongLinesWithoutBufferingThemAndGoesOn() {
        let long = String(repeating: "x", count: 250)
        for chunk in [1, 3, 64, 1000] {
            let ev = frame("ok\n\(long)\nnext\n\(long)", max: 100, chunk: chunk)
            #expect(ev == [.line(Array("ok".utf8), number: 1), .tooLong(number: 2, bytes: 250),
                           .line(Array("next".utf8), number: 3), .tooLong(number: 4, bytes: 250)], "chunk \(chunk)")
        }
    }

    @Test func theLimitCountsTheLineWithoutItsCarriageReturn() {
        let exact = String(repeating: "y", count: 10)
        #expect(frame(exact + "\r\n", max: 10, chunk: 4) == [.line(Array(exact.utf8), number: 1)])
        #expect(frame(exact + "z\n", max: 10, chunk: 4) == [.tooLong(number: 1, bytes: 11)])
        #expect(frame(exact + "zz\r\n", max: 10, chunk: 4) == [.tooLong(number: 1, bytes: 12)])
    }

    @Test func blankLinesAreOnlySpacesTabsAndCarriageReturns() {
        #expect(isBlank(Array(" \t\r".utf8)))
        #expect(isBlank([]))
        #expect(!isBlank(Array(" x ".utf8)))
        #expect(!isBlank([0x0B]))
    }
}
