import Foundation
import Testing

@testable import CellImage
import CytoCore

// The square-root transfer against its formula evaluated here in Double, its inverse, its JSON
// form and errors, and the crop loader applying it after the normalization.

/// 2 t(u) - 1 with t(u) = (sqrt(u + c) - sqrt(c)) / (sqrt(1 + c) - sqrt(c)), u = (v + 1) / 2.
private func squareRoot(_ v: Double, offset c: Double) -> Double {
    let u = min(max((v + 1) / 2, 0), 1)
    return ((u + c).squareRoot() - c.squareRoot()) / ((1 + c).squareRoot() - c.squareRoot()) * 2 - 1
}

@Test func squareRootTransferFollowsItsFormula() {
    for c in [0.04, 0.01, 1.0] {
        let inputs: [Float] = [-1.5, -1, -0.999, -0.99, -0.9, -0.5, 0, 0.37, 0.9, 1, 1.2]
        var p = inputs
        IntensityTransfer.squareRoot(offset: Float(c)).apply(&p, count: p.count)
        for (x, y) in zip(inputs, p) {
            #expect(abs(Double(y) - squareRoot(Double(x), offset: c)) <= 1e-6, "offset \(c) at \(x)")
        }
        // The ends stay put; the dark end is spread, the bright end narrowed.
        #expect(p[1] == -1 && abs(p[9] - 1) <= 1e-6)
        if c < 0.1 { #expect(p[3] + 1 > 0.01 * 1.5 && 1 - p[8] < 0.1) }
        var q = p
        IntensityTransfer.squareRoot(offset: Float(c)).invert(&q, count: q.count)
        for (x, y) in zip(inputs, q) { #expect(abs(y - min(max(x, -1), 1)) <= 2e-6, "offset \(c) back from \(x)") }
    }
    var same: [Float] = [-1, -0.3, 0.5]
    IntensityTransfer.linear.apply(&same, count: 3)
    #expect(same == [-1, -0.3, 0.5])
}

@Test func transferRoundTripsThroughJSONAndNamesBadFields() throws {
    for t in [IntensityTransfer.linear, .squareRoot(offset: 0.04)] {
        #expect(try IntensityTransfer(json: try JSON.parse(t.json.serialized)) == t)
    }
    let pre = Preprocessing(size: 64, channels: 3, normalization: .fixedScale([1, 2, 3]), transfer: .squareRoot(offset: 0.04), resize: .padCrop)
    #expect(try Preprocessing(json: try JSON.parse(pre.json.serialized)) == pre)
    // A linear transfer is left out of the JSON, so older configurations read the same.
    #expect(Preprocessing(size: 64, channels: 3).json.objectValue?["transfer"] == nil)
    for (bad, field) in [(#"{"kind":"gamma"}"#, "kind"), (#"{"kind":"square_root"}"#, "offset"),
                         (#"{"kind":"square_root","offset":0}"#, "offset"), (#"{"kind":"square_root","offset":"x"}"#, "offset"),
                         (#"{"offset":1}"#, "kind"), ("[]", "transfer")] {
        do { _ = try IntensityTransfer(json: try JSON.parse(bad)); Issue.record("accepted \(bad)") } catch let e as CytoError {
            #expect(e.field == field, "\(bad)")
        }
    }
}

@Test func cropLoaderAppliesTheTransferAfterTheNormalization() throws {
    let dir = NSTemporaryDirectory() + "transfer-tests-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
    try makeDirectories(dir)
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let raw: [UInt16] = (0..<16).map { UInt16($0 * $0 * 30) }
    try ImageWriter.writeTIFF(PixelImage(width: 4, height: 4, channels: 1, sampleType: .uint16, storage: raw.withUnsafeBytes { Array($0) }),
                              to: dir + "/c.tif")
    let pre = Preprocessing(size: 4, channels: 1, normalization: .fixedRange(low: [100], high: [5000]),
                            transfer: .squareRoot(offset: 0.04), resize: .padCrop)
    let out = try CropLoader(preprocessing: pre).load(.file(dir + "/c.tif"))
    for (r, y) in zip(raw, out) {
        let linear = min(max((Double(r) - 100) / 4900 * 2 - 1, -1), 1)
        #expect(abs(Double(y) - squareRoot(linear, offset: 0.04)) <= 1e-5, "raw \(r)")
    }
}
