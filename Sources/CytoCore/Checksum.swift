import CZlib

/// The CRC-32 of `bytes` (zlib's: the checksum of PNG chunks and gzip members).
public func crc32(_ bytes: UnsafeRawBufferPointer) -> UInt32 {
    guard let base = bytes.baseAddress else { return 0 }
    return UInt32(CZlib.crc32(0, base.assumingMemoryBound(to: UInt8.self), UInt32(bytes.count)))
}
