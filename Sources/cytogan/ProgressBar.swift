import Foundation

/// A progress display on stderr: a redrawn bar on a terminal, plain lines otherwise (logs, CI).
/// stdout is never touched, so it is safe beside protocol or table output.
final class ProgressBar: @unchecked Sendable {
    private let isTTY = isatty(2) != 0
    private let lock = NSLock()
    private var lastLine = Date.distantPast
    private var drawn = false
    /// Seconds between plain lines when stderr is not a terminal.
    var lineInterval: Double = 10

    /// Shows `stage` at `fraction` (0...1) of its work, with a short `detail`.
    func update(_ stage: String, fraction: Double, detail: String = "") {
        lock.lock(); defer { lock.unlock() }
        let f = min(max(fraction, 0), 1)
        if isTTY {
            let width = 28, filled = Int(f * Double(width))
            let bar = String(repeating: "#", count: filled) + String(repeating: "-", count: width - filled)
            let text = String(format: "\r%@ [%@] %3.0f%% %@", stage.padding(toLength: 18, withPad: " ", startingAt: 0), bar, f * 100, detail)
            FileHandle.standardError.write(Data((text + "\u{1B}[K").utf8))
            drawn = true
        } else if Date().timeIntervalSince(lastLine) >= lineInterval || f >= 1 {
            FileHandle.standardError.write(Data(String(format: "%@ %3.0f%% %@\n", stage, f * 100, detail).utf8))
            lastLine = Date()
        }
    }

    /// Ends the current bar line and prints `message` on its own line.
    func log(_ message: String) {
        lock.lock(); defer { lock.unlock() }
        if drawn { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)); drawn = false }
        FileHandle.standardError.write(Data((message + "\n").utf8))
        lastLine = .distantPast
    }
}
