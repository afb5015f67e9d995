import Foundation

import CZlib

/// Streams an RFC 4180 CSV file (comma-separated, double-quoted fields that may hold commas,
/// quotes and newlines) one record at a time. Gzip-compressed files are read transparently.
/// Errors name the path and the line.
public final class CSVReader {
    public let path: String
    /// Line number (1-based) where the record last returned by `next()` started.
    public private(set) var line = 0
    /// The header (the first record, surrounding spaces trimmed).
    public private(set) var columns: [String] = []

    private let file: gzFile
    private var buffer = [UInt8](repeating: 0, count: 1 << 16)
    private var bufLen = 0
    private var bufPos = 0
    private var physicalLine = 1
    private var eof = false

    public init(path: String) throws {
        self.path = path
        guard let f = gzopen(path, "rb") else {
            throw CytoError(.fileNotFound, "cannot open CSV file", path: path)
        }
        file = f
        gzbuffer(f, 1 << 17)
        guard let first = try nextRecord() else {
            throw CytoError(.invalidInput, "CSV file is empty (no header line)", path: path)
        }
        columns = first.map { $0.trimmingCharacters(in: .whitespaces) }
    }

    deinit { gzclose(file) }

    /// Index of a column by exact name.
    public func column(_ name: String) -> Int? { columns.firstIndex(of: name) }

    /// The next record, or nil at end of file. A record whose field count differs from the
    /// header's is an error naming its line.
    public func next() throws -> [String]? {
        while true {
            guard let r = try nextRecord() else { return nil }
            if r.count == 1 && r[0].isEmpty { continue }  // blank line
            guard r.count == columns.count else {
                throw CytoError(.invalidInput,
                                "record has \(r.count) fields, the header has \(columns.count)",
                                path: path, line: line)
            }
            return r
        }
    }

    private func byte() throws -> UInt8? {
        if bufPos == bufLen {
            if eof { return nil }
            let n = buffer.withUnsafeMutableBytes { gzread(file, $0.baseAddress, UInt32($0.count)) }
            if n < 0 { throw CytoError(.io, "read error (corrupt or truncated file?)", path: path, line: physicalLine) }
            if n == 0 { eof = true; return nil }
            bufLen = Int(n); bufPos = 0
        }
        let b = buffer[bufPos]; bufPos += 1
        return b
    }

    private func nextRecord() throws -> [String]? {
        var fields: [String] = []
        var field: [UInt8] = []
        var inQuotes = false
        var sawAny = false
        line = physicalLine
        while true {
            guard let b = try byte() else {
                if inQuotes { throw CytoError(.invalidInput, "unterminated quoted field", path: path, line: line) }
                if !sawAny { return nil }
                fields.append(String(decoding: field, as: UTF8.self))
                return fields
            }
            sawAny = true
            if inQuotes {
                if b == UInt8(ascii: "\"") {
                    // Either the closing quote or an escaped quote ("").
                    if let n = try byte() {
                        if n == UInt8(ascii: "\"") { field.append(n); continue }
                        inQuotes = false
                        bufPos -= 1  // re-read n outside quotes
                    } else { inQuotes = false }
                } else {
                    if b == 0x0A { physicalLine += 1 }
                    field.append(b)
                }
                continue
            }
            switch b {
            case UInt8(ascii: ","):
                fields.append(String(decoding: field, as: UTF8.self)); field.removeAll(keepingCapacity: true)
            case UInt8(ascii: "\""):
                if field.isEmpty { inQuotes = true } else { field.append(b) }
            case 0x0D:
                continue
            case 0x0A:
                physicalLine += 1
                fields.append(String(decoding: field, as: UTF8.self))
                return fields
            default:
                field.append(b)
            }
        }
    }
}

/// Writes CSV records, quoting fields that need it. Writes go to a temporary file that
/// `finish()` renames into place, so a reader never sees half a table.
public final class CSVWriter {
    private let out: AtomicFile
    public init(path: String, header: [String]) throws {
        out = try AtomicFile(path: path)
        try write(header)
    }
    public func write(_ record: [String]) throws {
        var line = ""
        for (i, f) in record.enumerated() {
            if i > 0 { line += "," }
            line += CSVWriter.quoted(f)
        }
        line += "\n"
        try out.write(line)
    }
    public func finish() throws { try out.commit() }

    public static func quoted(_ f: String) -> String {
        if f.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" }) {
            return "\"" + f.replacingOccurrences(of: "\"", with: "\"\"") + "\""
        }
        return f
    }
}
