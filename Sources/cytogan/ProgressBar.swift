import Foundation

/// Progress on stderr: a redrawn bar on a terminal, plain lines otherwise (logs, CI), or nothing.
/// stdout is never touched, so it is safe beside protocol or table output. Shared by `train`,
/// `demo` and any long command.
final class ProgressBar: @unchecked Sendable {
    enum Mode { case bar, lines, none }
    let mode: Mode
    /// Least seconds between plain lines (0: every update is a line).
    var lineInterval: Double
    private let lock = NSLock()
    private var lastLine = Date.distantPast
    private var drawn = false

    /// `mode` nil picks a bar on a terminal and lines otherwise.
    init(mode: Mode? = nil, lineInterval: Double = 10) {
        self.mode = mode ?? (isatty(2) != 0 ? .bar : .lines)
        self.lineInterval = lineInterval
    }

    /// Shows `stage` with `detail`, and a bar when `fraction` (0...1) is known.
    func update(_ stage: String, fraction: Double?, detail: String = "") {
        lock.lock(); defer { lock.unlock() }
        let f = fraction.map { min(max($0, 0), 1) }
        switch mode {
        case .none: return
        case .bar:
            var bar = ""
            if let f {
                let width = 24, filled = Int(f * Double(width))
                bar = "[" + String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled) + "] "
            }
            let head = stage.isEmpty ? "" : stage + " "
            FileHandle.standardError.write(Data(("\r\u{1B}[K" + head + bar + detail).utf8))
            drawn = true
        case .lines:
            guard Date().timeIntervalSince(lastLine) >= lineInterval || f == 1 else { return }
            var text = stage
            if let f { text += String(format: " %3.0f%%", f * 100) }
            if !detail.isEmpty { text += " " + detail }
            stderrLine(text)
            lastLine = Date()
        }
    }

    /// A log line (shown in every mode), clearing the bar first.
    func log(_ message: String) {
        lock.lock(); defer { lock.unlock() }
        if drawn { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)); drawn = false }
        stderrLine(message)
        lastLine = .distantPast
    }

    /// Ends a drawn bar's line.
    func finish() {
        lock.lock(); defer { lock.unlock() }
        if drawn { FileHandle.standardError.write(Data("\n".utf8)); drawn = false }
    }
}
