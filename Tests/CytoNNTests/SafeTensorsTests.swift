import CytoCore
import CytoNNTestSupport
import Foundation
import Testing
@testable import CytoNN

@Suite("Safetensors")
struct SafeTensorsTests {
    func tempPath(_ name: String) -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("cytonn-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        try? FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir.appendingPathComponent(name).path
    }

    @Test("write then read: names, shapes, values and metadata survive; layout follows the format")
    func roundTrip() throws {
        let path = tempPath("a.safetensors")
        let a = randomTensor(Shape(2, 3, 4, 5), seed: 1), b = try Tensor(Shape(3), [1, -2, 3.5]), s = try Tensor(Shape(), [7])
        try SafeTensors.write([("conv0.weight", a), ("conv0.bias", b), ("step", s)], metadata: ["step": "12", "loss": "lsgan"], to: path)
        let f = try SafeTensors.read(path)
        #expect(f.names == ["conv0.weight", "conv0.bias", "step"])
        #expect(f.tensors["conv0.weight"]!.shape == a.shape && f.tensors["conv0.weight"]!.values == a.values)
        #expect(f.tensors["conv0.bias"]!.values == [1, -2, 3.5] && f.tensors["step"]!.shape.rank == 0)
        #expect(f.metadata == ["step": "12", "loss": "lsgan"])
        // Byte layout: u64 header length (a multiple of 8), JSON header, then the F32 data.
        let bytes = try readFileBytes(path)
        var n = 0
        for i in (0..<8).reversed() { n = n << 8 | Int(bytes[i]) }
        #expect(n % 8 == 0 && bytes.count == 8 + n + (a.count + 3 + 1) * 4)
        let header = try JSON.parse(String(decoding: bytes[8..<(8 + n)], as: UTF8.self))
        #expect(header["conv0.bias"]?["dtype"]?.stringValue == "F32")
        #expect(header["conv0.bias"]?["data_offsets"] == JSON.array([.int(Int64(a.count * 4)), .int(Int64(a.count * 4 + 12))]))
        #expect(header["__metadata__"]?["step"]?.stringValue == "12")
        #expect(throws: CytoError.self) { try SafeTensors.write([("x", b), ("x", b)], to: path) }
    }

    /// A safetensors image built by hand from a header text and data bytes.
    func image(_ header: String, _ data: [UInt8]) -> [UInt8] {
        var h = Array(header.utf8)
        while h.count % 8 != 0 { h.append(0x20) }
        var out = [UInt8](repeating: 0, count: 8)
        var n = UInt64(h.count)
        for i in 0..<8 { out[i] = UInt8(n & 0xff); n >>= 8 }
        return out + h + data
    }

    @Test("reads F16, BF16, F64, I64 and I32 as Float32")
    func dtypes() throws {
        // F16: 1.0 = 0x3C00, -2.5 = 0xC100, 2^-24 = 0x0001; BF16: 1.5 = 0x3FC0; F64: 0.1; I64: -3; I32: 70000.
        var data: [UInt8] = [0x00, 0x3C, 0x00, 0xC1, 0x01, 0x00, 0xC0, 0x3F]
        withUnsafeBytes(of: (0.1 as Double).bitPattern.littleEndian) { data += $0 }
        withUnsafeBytes(of: Int64(-3).littleEndian) { data += $0 }
        withUnsafeBytes(of: Int32(70000).littleEndian) { data += $0 }
        let header = """
        {"h":{"dtype":"F16","shape":[3],"data_offsets":[0,6]},"b":{"dtype":"BF16","shape":[1],"data_offsets":[6,8]},\
        "d":{"dtype":"F64","shape":[1,1],"data_offsets":[8,16]},"i":{"dtype":"I64","shape":[1],"data_offsets":[16,24]},\
        "j":{"dtype":"I32","shape":[],"data_offsets":[24,28]}}
        """
        let f = try SafeTensors.decode(image(header, data))
        #expect(f.tensors["h"]!.values == [1, -2.5, 0x1p-24])
        #expect(f.tensors["b"]!.values == [1.5] && f.tensors["d"]!.values == [Float(0.1)] && f.tensors["d"]!.shape == Shape(1, 1))
        #expect(f.tensors["i"]!.values == [-3] && f.tensors["j"]!.values == [70000])
        #expect(f.names == ["h", "b", "d", "i", "j"] && f.dtypes["b"] == "BF16")
    }

    @Test("damaged or unsupported files give errors naming the file and tensor")
    func errors() throws {
        let ok = "{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}"
        _ = try SafeTensors.decode(image(ok, [UInt8](repeating: 0, count: 8)))
        let bad: [(String, [UInt8], String)] = [
            (ok, [UInt8](repeating: 0, count: 4), "outside"),                                            // truncated data
            ("{\"t\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", [UInt8](repeating: 0, count: 8), "needs 12"),
            ("{\"t\":{\"dtype\":\"C64\",\"shape\":[1],\"data_offsets\":[0,8]}}", [UInt8](repeating: 0, count: 8), "C64"),
            ("{\"t\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1],\"data_offsets\":[0,4]}}", [UInt8](repeating: 0, count: 4), "rank 5"),
            ("{\"t\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", [UInt8](repeating: 0, count: 4), "shape"),
            ("{\"__metadata__\":{\"a\":1}}", [], "not a string"),
            ("[1,2]", [], "not an object"),
            ("{\"t\":", [], "not JSON"),
        ]
        for (header, data, needle) in bad {
            do {
                _ = try SafeTensors.decode(image(header, data), path: "/x/model.safetensors")
                Issue.record("no error for \(header)")
            } catch let e as CytoError {
                #expect(e.path == "/x/model.safetensors" && e.description.contains(needle), "\(e)")
            }
        }
        #expect(throws: CytoError.self) { _ = try SafeTensors.decode([1, 2, 3]) }
        #expect(throws: CytoError.self) { _ = try SafeTensors.decode([255, 255, 0, 0, 0, 0, 0, 0, 32]) }
        do {
            _ = try SafeTensors.read("/nonexistent/file.safetensors")
        } catch let e as CytoError { #expect(e.kind == .fileNotFound) }
    }
}
