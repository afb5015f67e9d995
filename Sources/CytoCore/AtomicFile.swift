#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A file written under a temporary name beside its destination and renamed into place on
/// `commit()`, so readers see the old file or the whole new one, never a part. Dropped
/// without a commit, the temporary file is removed.
public final class AtomicFile {
    public let path: String
    public let temporaryPath: String
    private var fd: Int32
    private var pending: [UInt8] = []
    private var committed = false

    public init(path: String) throws {
        self.path = path
        temporaryPath = "\(path).tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        fd = open(temporaryPath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        if fd < 0 {
            throw CytoError(.io, "cannot create file: \(String(cString: strerror(errno)))", path: path)
        }
        pending.reserveCapacity(1 << 16)
    }

    deinit {
        if fd >= 0 { close(fd) }
        if !committed { unlink(temporaryPath) }
    }

    public func write(_ s: String) throws { try write(bytes: Array(s.utf8)) }

    public func write(bytes: [UInt8]) throws {
        pending.append(contentsOf: bytes)
        if pending.count >= 1 << 16 { try flush() }
    }

    public func write(raw: UnsafeRawBufferPointer) throws {
        try flush()
        try writeAll(raw)
    }

    private func writeAll(_ raw: UnsafeRawBufferPointer) throws {
        if let failure = CytoCore.writeAll(fd: fd, raw) {
            throw CytoError(.io, "write failed: \(String(cString: strerror(failure)))", path: path)
        }
    }

    public func flush() throws {
        guard !pending.isEmpty else { return }
        try pending.withUnsafeBytes { try writeAll($0) }
        pending.removeAll(keepingCapacity: true)
    }

    /// Overwrites bytes at `offset` (for headers patched once the size is known).
    public func patch(at offset: Int, bytes: [UInt8]) throws {
        try flush()
        let r = bytes.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, off_t(offset)) }
        if r != bytes.count { throw CytoError(.io, "write failed", path: path) }
    }

    /// Flushes, syncs (unless `durable` is false: bulk outputs that can be regenerated skip the
    /// costly fsync, and stay atomic against crashes of this process) and renames into place.
    public func commit(durable: Bool = true) throws {
        guard !committed else { return }
        try flush()
        if durable && fsync(fd) != 0 { throw CytoError(.io, "fsync failed: \(String(cString: strerror(errno)))", path: path) }
        close(fd); fd = -1
        if rename(temporaryPath, path) != 0 {
            throw CytoError(.io, "cannot rename into place: \(String(cString: strerror(errno)))", path: path)
        }
        committed = true
    }

    /// Writes `bytes` to `path` atomically in one call.
    public static func write(_ bytes: [UInt8], to path: String, durable: Bool = true) throws {
        let f = try AtomicFile(path: path)
        try f.write(bytes: bytes)
        try f.commit(durable: durable)
    }
}

/// Reads a whole file into memory, with an error naming the path.
public func readFileBytes(_ path: String, limit: Int = Int.max) throws -> [UInt8] {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    if fd < 0 {
        let kind: CytoError.Kind = errno == ENOENT ? .fileNotFound : .io
        throw CytoError(kind, errno == ENOENT ? "no such file" : "cannot open: \(String(cString: strerror(errno)))", path: path)
    }
    defer { close(fd) }
    var st = stat()
    if fstat(fd, &st) == 0 && Int(st.st_size) > limit {
        throw CytoError(.invalidInput, "file is \(st.st_size) bytes, over the limit of \(limit)", path: path)
    }
    var out: [UInt8] = []
    out.reserveCapacity(max(Int(st.st_size), 0))
    var chunk = [UInt8](repeating: 0, count: 1 << 16)
    while true {
        let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n < 0 { if errno == EINTR { continue }; throw CytoError(.io, "read failed", path: path) }
        if n == 0 { break }
        out.append(contentsOf: chunk[0..<n])
        if out.count > limit { throw CytoError(.invalidInput, "file is over the limit of \(limit) bytes", path: path) }
    }
    return out
}

/// True if a regular file (or a link to one) exists at `path`.
public func fileExists(_ path: String) -> Bool {
    var st = stat()
    return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFREG
}

/// Creates a directory and its parents (like `mkdir -p`).
public func makeDirectories(_ path: String) throws {
    var cur = path.hasPrefix("/") ? "" : "."
    for part in path.split(separator: "/") {
        cur += "/" + part
        if mkdir(cur, 0o755) != 0 && errno != EEXIST {
            throw CytoError(.io, "cannot create directory: \(String(cString: strerror(errno)))", path: cur)
        }
    }
}

/// Writes every byte to a file descriptor, retrying short writes and EINTR. Returns nil, or the
/// errno of the write that failed (the caller words the error for what it was writing).
@discardableResult
public func writeAll(fd: Int32, _ bytes: UnsafeRawBufferPointer) -> Int32? {
    var off = 0
    while off < bytes.count {
        let n = write(fd, bytes.baseAddress! + off, bytes.count - off)
        if n < 0 {
            if errno == EINTR { continue }
            return errno
        }
        off += n
    }
    return nil
}

/// `writeAll(fd:_:)` for an array of bytes.
@discardableResult
public func writeAll(fd: Int32, _ bytes: [UInt8]) -> Int32? {
    bytes.withUnsafeBytes { writeAll(fd: fd, $0) }
}
