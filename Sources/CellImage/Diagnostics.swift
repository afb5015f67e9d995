import Foundation

/// Where libtiff's and libpng's warnings go: stderr, each distinct message once per process, so a
/// long extraction over thousands of files from the same writer logs a quirk once, and stdout
/// (the worker's protocol channel) never sees them. Tests may silence it.
public enum ImageWarnings {
    nonisolated(unsafe) private static var seen = Set<String>()
    nonisolated(unsafe) private static var enabled = true
    private static let lock = NSLock()

    /// Turns logging to stderr on or off (for fuzzing, where every input warns).
    public static func setEnabled(_ on: Bool) {
        lock.lock(); enabled = on; lock.unlock()
    }

    /// Logs `message` from `library` (e.g. "libtiff") to stderr unless already logged.
    public static func log(_ library: String, _ message: String) {
        lock.lock()
        let fresh = enabled && seen.count < 10_000 && seen.insert(library + ": " + message).inserted
        lock.unlock()
        if fresh { FileHandle.standardError.write(Data("cytogan: \(library) warning: \(message)\n".utf8)) }
    }
}

/// The text of a NUL-terminated C character buffer.
func cText(_ buf: [CChar]) -> String {
    String(decoding: buf.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
}
