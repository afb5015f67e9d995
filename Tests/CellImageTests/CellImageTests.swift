import Foundation
import Testing

@testable import CellImage
import CytoCore

// Hand-computed expectations for cropping, masking, normalization, resizing, writing and
// features. (Decoding against independent readers is checked in Tests/python/test_images.py.)

/// A uint16 image from CHW values.
private func image(_ values: [UInt16], channels: Int = 1, width: Int, height: Int) -> PixelImage {
    PixelImage(width: width, height: height, channels: channels, sampleType: .uint16,
               storage: values.withUnsafeBytes { Array($0) })
}

private func values(_ im: PixelImage) -> [Double] {
    (0..<im.channels).flatMap { c in (0..<im.height).flatMap { y in (0..<im.width).map { x in im.value(channel: c, y: y, x: x) } } }
}

private func tempDir() throws -> String {
    let d = NSTemporaryDirectory() + "cellimage-tests-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
    try makeDirectories(d)
    return d
}

private func close(_ a: [Float], _ b: [Float], tol: Float = 1e-5) -> Bool {
    a.count == b.count && zip(a, b).allSatisfy { abs($0 - $1) <= tol }
}

// MARK: Cropping

@Test func centreWindowPadsWithZerosAtTheBorder() throws {
    // 5x5 field with values 1...25; a 4x4 crop centred on (1.4, 0.6) -> pixel (1, 1).
    let field = image((1...25).map { UInt16($0) }, width: 5, height: 5)
    let rect = try Cropping.window(for: .centre(x: 1.4, y: 0.6), fieldWidth: 5, fieldHeight: 5, size: 4)
    #expect(rect == PixelRect(x: -1, y: -1, width: 4, height: 4))
    let crop = field.cut(rect)
    #expect(values(crop) == [0, 0, 0, 0,
                             0, 1, 2, 3,
                             0, 6, 7, 8,
                             0, 11, 12, 13])
}

@Test func boxWindowsAreCentredOnTheBox() throws {
    // Box [2, 6) x [1, 3): 4 wide, 2 high. A 6-pixel crop starts 1 left and 2 above.
    #expect(try Cropping.window(for: .box(x0: 2, y0: 1, x1: 6, y1: 3), fieldWidth: 10, fieldHeight: 10, size: 6)
            == PixelRect(x: 1, y: -1, width: 6, height: 6))
    // No size: the square envelope (side 4), centred.
    #expect(try Cropping.window(for: .box(x0: 2, y0: 1, x1: 6, y1: 3), fieldWidth: 10, fieldHeight: 10, size: nil)
            == PixelRect(x: 2, y: 0, width: 4, height: 4))
}

@Test func regionsOutsideTheFieldAreErrors() {
    #expect(throws: CytoError.self) { try Cropping.window(for: .centre(x: 10, y: 2), fieldWidth: 10, fieldHeight: 10, size: 4) }
    #expect(throws: CytoError.self) { try Cropping.window(for: .centre(x: .nan, y: 2), fieldWidth: 10, fieldHeight: 10, size: 4) }
    #expect(throws: CytoError.self) { try Cropping.window(for: .box(x0: 12, y0: 0, x1: 15, y1: 4), fieldWidth: 10, fieldHeight: 10, size: nil) }
    #expect(throws: CytoError.self) { try Cropping.window(for: .box(x0: 3, y0: 3, x1: 3, y1: 5), fieldWidth: 10, fieldHeight: 10, size: nil) }
    do {
        _ = try Cropping.window(for: .box(x0: -9, y0: 0, x1: 0, y1: 4), fieldWidth: 10, fieldHeight: 10, size: nil, path: "f.tif")
        Issue.record("a box left of the field must be refused")
    } catch let e as CytoError {
        #expect(e.path == "f.tif" && e.message.contains("outside"))
    } catch { Issue.record("unexpected \(error)") }
}

@Test func maskKeepsOnlyTheObject() {
    var crop = image([10, 20, 30, 40, 50, 60, 70, 80], channels: 2, width: 2, height: 2)
    let kept = crop.keepOnly(label: 3, mask: [0, 3, 3, 5])
    #expect(kept == 2)
    #expect(values(crop) == [0, 20, 30, 0, 0, 60, 70, 0])
}

@Test func cropLoaderCutsMasksAndCachesFields() throws {
    let dir = try tempDir()
    // Field 6x6 = 1...36; labels: object 4 is the 2x2 block at rows 2-3, cols 3-4.
    try ImageWriter.writeTIFF(image((1...36).map { UInt16($0) }, width: 6, height: 6), to: dir + "/f.tif")
    var labels = [UInt16](repeating: 0, count: 36)
    for y in 2...3 { for x in 3...4 { labels[y * 6 + x] = 4 } }
    labels[0] = 9
    try ImageWriter.writeTIFF(image(labels, width: 6, height: 6), to: dir + "/m.tif")

    let cache = FieldCache()
    let pre = Preprocessing(size: 4, channels: 1, normalization: .bitDepth(bits: 16), resize: .padCrop)
    let loader = CropLoader(preprocessing: pre, cache: cache)
    let spec = CropSpec(source: .file(dir + "/f.tif"), region: .centre(x: 3.5, y: 2.5), mask: MaskSpec(path: dir + "/m.tif"))
    // Centre rounds to (4, 3): window columns 2..5, rows 1..4.
    let raw = try loader.raw(spec)
    #expect(values(raw) == [0, 0, 0, 0,
                            0, 16, 17, 0,
                            0, 22, 23, 0,
                            0, 0, 0, 0])
    let out = try loader.load(spec)
    #expect(close(out, values(raw).map { Float($0 / 65535 * 2 - 1) }))
    _ = try loader.raw(CropSpec(source: .file(dir + "/f.tif"), region: .centre(x: 1, y: 1)))
    #expect(cache.misses == 2 && cache.hits >= 2)  // field and mask decoded once each

    // An explicit label absent from the window, and a centre on background, are empty masks.
    #expect(throws: CytoError.self) {
        try loader.raw(CropSpec(source: .file(dir + "/f.tif"), region: .centre(x: 4, y: 3), mask: MaskSpec(path: dir + "/m.tif", label: 9)))
    }
    #expect(throws: CytoError.self) {
        try loader.raw(CropSpec(source: .file(dir + "/f.tif"), region: .centre(x: 1, y: 4), mask: MaskSpec(path: dir + "/m.tif")))
    }
    // Wrong channel count for the model.
    let three = CropLoader(preprocessing: Preprocessing(size: 4, channels: 3))
    do { _ = try three.load(.file(dir + "/f.tif")); Issue.record("expected a channel count error") }
    catch let e as CytoError { #expect(e.kind == .shapeMismatch && e.path == dir + "/f.tif") }
}

// MARK: Normalization

private func normalized(_ n: Normalization, _ v: [Float], type: SampleType = .uint16) -> [Float] {
    var p = v, scratch = [Float](repeating: 0, count: v.count)
    p.withUnsafeMutableBufferPointer { pb in
        scratch.withUnsafeMutableBufferPointer { n.apply(pb.baseAddress!, channels: 1, planeCount: v.count, type: type, scratch: $0.baseAddress!) }
    }
    return p
}

@Test func normalizationsMapTheirRangeToMinusOneOne() {
    #expect(close(normalized(.perCropMax, [0, 2, 4, 1]), [-1, 0, 1, -0.5]))
    #expect(close(normalized(.perCropMax, [0, 0]), [-1, -1]))  // an empty channel stays black
    #expect(close(normalized(.bitDepth(bits: nil), [0, 255, 51], type: .uint8), [-1, 1, -0.6]))
    #expect(close(normalized(.bitDepth(bits: 12), [0, 4095, 8190]), [-1, 1, 1]))
    #expect(close(normalized(.fixedScale([200]), [0, 50, 400]), [-1, -0.5, 1]))
    // Percentiles of [1, 2, 3, 4, 5]: P25 = 2, P75 = 4 (NumPy linear).
    #expect(close(normalized(.percentile(low: 25, high: 75), [1, 2, 3, 4, 5]), [-1, -1, 0, 1, 1]))
    #expect(close(normalized(.fixedRange(low: [10], high: [30]), [0, 10, 15, 30, 99, .nan]), [-1, -1, -0.5, 1, 1, -1]))
}

@Test func percentilesFollowNumPy() {
    var v: [Float] = [3, 1, 2, 4]
    // np.percentile([3,1,2,4], [0, 50, 90, 100]) = [1, 2.5, 3.7, 4]
    for (p, want) in [(0.0, 1.0), (50, 2.5), (90, 3.7), (100, 4.0)] {
        let got = v.withUnsafeMutableBufferPointer { Percentile.value($0, p) }
        #expect(abs(got - want) < 1e-9)
    }
    var many = (0..<1001).map { Float(($0 * 7919) % 1001) }  // a permutation of 0...1000
    let p37 = many.withUnsafeMutableBufferPointer { Percentile.value($0, 37.3) }
    #expect(abs(p37 - 373.0) < 1e-9)
}

@Test func normalizationRoundTripsThroughJSON() throws {
    let all: [Normalization] = [.perCropMax, .bitDepth(bits: nil), .bitDepth(bits: 12), .fixedScale([100, 2000.5]),
                                .percentile(low: 0.5, high: 99.5), .fixedRange(low: [1, 2], high: [3, 4.25])]
    for n in all {
        #expect(try Normalization(json: try JSON.parse(n.json.serialized)) == n)
    }
    let pre = Preprocessing(size: 64, channels: 2, cropSize: 80, normalization: .fixedScale([1, 2]), resize: .area)
    #expect(try Preprocessing(json: try JSON.parse(pre.json.serialized)) == pre)
    for bad in [#"{"kind":"nope"}"#, #"{"kind":"percentile","low":50,"high":10}"#, #"{"kind":"fixed_scale","scale":[0]}"#,
                #"{"kind":"fixed_range","low":[1],"high":[1,2]}"#, #"{"kind":"bit_depth","bits":40}"#, "[]"] {
        #expect(throws: CytoError.self) { try Normalization(json: try JSON.parse(bad)) }
    }
    #expect(throws: CytoError.self) { try Preprocessing(json: try JSON.parse(#"{"channels":3,"normalization":{"kind":"fixed_scale","scale":[1]}}"#)) }
}

@Test func estimatorGivesDatasetPercentiles() throws {
    let est = NormalizationEstimator(channels: 1, maxValuesPerChannel: 1000)
    for k in 0..<10 { try est.add(image((0..<100).map { UInt16(k * 100 + $0) }, width: 10, height: 10)) }
    // Values 0...999 seen once each (subsampled evenly to at most 1000).
    let p = try est.percentile(50)
    #expect(abs(p[0] - 499.5) <= 1)
    if case .fixedScale(let s) = try est.fixedScale(percentile: 100) { #expect(s[0] >= 998) } else { Issue.record("fixedScale") }
}

// MARK: Resizing

private func resize(_ v: [Float], w: Int, h: Int, to ow: Int, _ oh: Int, _ mode: ResizeMode, fill: Float = -1) -> [Float] {
    let r = Resampler(inputWidth: w, inputHeight: h, outputWidth: ow, outputHeight: oh, mode: mode)
    var out = [Float](repeating: 0, count: ow * oh)
    v.withUnsafeBufferPointer { src in out.withUnsafeMutableBufferPointer { r.apply(src.baseAddress!, channels: 1, into: $0.baseAddress!, fill: fill) } }
    return out
}

@Test func areaAveragingWeighsFractionalCoverage() {
    #expect(close(resize([1, 2, 3, 4], w: 4, h: 1, to: 2, 1, .area), [1.5, 3.5]))
    // 3 -> 2: out0 = (3*1 + 6*0.5)/1.5 = 4, out1 = (6*0.5 + 9*1)/1.5 = 8.
    #expect(close(resize([3, 6, 9], w: 3, h: 1, to: 2, 1, .area), [4, 8]))
    // 2-D: a 4x4 block average to 2x2.
    let v: [Float] = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16]
    #expect(close(resize(v, w: 4, h: 4, to: 2, 2, .area), [3.5, 5.5, 11.5, 13.5]))
}

@Test func bilinearAlignsPixelCentresAndClampsEdges() {
    // 2 -> 4: sample points -0.25 (clamped), 0.25, 0.75, 1.25 (clamped).
    #expect(close(resize([0, 4], w: 2, h: 1, to: 4, 1, .bilinear), [0, 1, 3, 4]))
    // 2x2 -> 4x4 is the outer product of the 1-D weights.
    let out = resize([0, 4, 8, 12], w: 2, h: 2, to: 4, 4, .bilinear)
    let rows: [Float] = [0, 2, 6, 8]
    let cols: [Float] = [0, 1, 3, 4]
    #expect(close(out, rows.flatMap { r in cols.map { r + $0 } }))
}

@Test func padCropCentresWithoutResampling() {
    #expect(close(resize([5, 6], w: 2, h: 1, to: 4, 1, .padCrop, fill: -1), [-1, 5, 6, -1]))
    #expect(close(resize([1, 2, 3, 4], w: 4, h: 1, to: 2, 1, .padCrop), [2, 3]))
    #expect(close(resize([1, 2, 3], w: 1, h: 3, to: 1, 5, .padCrop, fill: 0), [0, 1, 2, 3, 0]))
}

@Test func resampleShrinksByAreaAndEnlargesBilinearly() {
    // 4 wide x 1 high -> 2 wide (area) x 2 high (bilinear from one row: copies).
    #expect(close(resize([1, 2, 3, 4], w: 4, h: 1, to: 2, 2, .resample), [1.5, 3.5, 1.5, 3.5]))
}

// MARK: Writing and reading back

@Test func tiffWriterRoundTripsEverySampleType() throws {
    let dir = try tempDir()
    for type in SampleType.allCases {
        let n = 5 * 7 * 3
        var im = PixelImage(width: 7, height: 5, channels: 3, sampleType: type)
        im.storage = (0..<(n * type.size)).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ 11) }
        if type == .float32 || type == .float64 {  // finite floats
            im = PixelImage(width: 7, height: 5, channels: 3, sampleType: type,
                            storage: type == .float32 ? (0..<n).map { Float($0) * 0.37 - 9 }.withUnsafeBytes { Array($0) }
                                                      : (0..<n).map { Double($0) * -1.5 }.withUnsafeBytes { Array($0) })
        }
        for comp in TIFFCompression.allCases {
            let path = dir + "/t_\(type.rawValue)_\(comp.rawValue).tif"
            try ImageWriter.writeTIFF(im, to: path, compression: comp)
            let back = try ImageReader.read(path: path)
            #expect(back.sampleType == type && back.channels == 3 && back.width == 7 && back.height == 5)
            #expect(back.storage == im.storage, "\(type) \(comp)")
        }
    }
}

@Test func pngRoundTripsGrayToRGBA() throws {
    let dir = try tempDir()
    for type in [SampleType.uint8, .uint16] {
        for c in 1...4 {
            let n = 9 * 4 * c * type.size
            let im = PixelImage(width: 9, height: 4, channels: c, sampleType: type, storage: (0..<n).map { UInt8(truncatingIfNeeded: $0 * 53 + 7) })
            let path = dir + "/p\(c)_\(type.rawValue).png"
            try ImageWriter.writePNG(im, to: path)
            let back = try ImageReader.read(path: path)
            #expect(back.channels == c && back.sampleType == type && back.storage == im.storage)
        }
    }
    #expect(throws: CytoError.self) { try PNGCodec.encode(PixelImage(width: 2, height: 2, channels: 5, sampleType: .uint8)) }
    #expect(throws: CytoError.self) { try PNGCodec.encode(PixelImage(width: 2, height: 2, channels: 1, sampleType: .float32)) }
}

@Test func generatedCellsQuantizeMinusOneOneToSixteenBits() {
    let v: [Float] = [-1, 0, 1, -2, 2, 0.5]
    let im = v.withUnsafeBufferPointer { PixelImage(quantizing: $0, channels: 1, width: 6, height: 1, from: (-1, 1), to: .uint16) }
    #expect(values(im) == [0, 32768, 65535, 0, 65535, 49151])  // 0 -> 32767.5 rounds up; 0.5 -> 49151.25
}

@Test func readErrorsNameTheFileAndTheFault() throws {
    let dir = try tempDir()
    do { _ = try ImageReader.read(path: dir + "/missing.tif"); Issue.record("missing file read") }
    catch let e as CytoError { #expect(e.kind == .fileNotFound && e.path == dir + "/missing.tif") }
    try AtomicFile.write([], to: dir + "/empty.png")
    do { _ = try ImageReader.read(path: dir + "/empty.png"); Issue.record("empty file read") }
    catch let e as CytoError { #expect(e.kind == .undecodable && e.message.contains("empty")) }
    let png = try PNGCodec.encode(image([1, 2, 3, 4], width: 2, height: 2))
    try AtomicFile.write(Array(png.prefix(png.count - 15)), to: dir + "/cut.png")
    do { _ = try ImageReader.read(path: dir + "/cut.png"); Issue.record("truncated PNG read") }
    catch let e as CytoError { #expect(e.kind == .undecodable && e.path == dir + "/cut.png") }
    let tiff = try ImageWriter.encodeTIFF(image((0..<400).map { UInt16($0) }, width: 20, height: 20), compression: .none)
    try AtomicFile.write(Array(tiff.prefix(300)), to: dir + "/cut.tif")
    do { _ = try ImageReader.read(path: dir + "/cut.tif"); Issue.record("truncated TIFF read") }
    catch let e as CytoError { #expect(e.kind == .undecodable && e.path == dir + "/cut.tif") }
    // A header beyond the decode limit is refused before allocating.
    let limits = DecodeLimits(maxBytes: 100)
    #expect(throws: CytoError.self) { try tiff.withUnsafeBytes { try ImageReader.decode($0, path: "x", limits: limits) } }
}

@Test func channelFilesStackAndRefuseMismatches() throws {
    let dir = try tempDir()
    try ImageWriter.writeTIFF(image([1, 2, 3, 4], width: 2, height: 2), to: dir + "/a.tif")
    try ImageWriter.writeTIFF(image([5, 6, 7, 8], width: 2, height: 2), to: dir + "/b.tif")
    try ImageWriter.writeTIFF(image([1, 2, 3], width: 3, height: 1), to: dir + "/c.tif")
    let both = try ImageReader.read(.channelFiles([dir + "/b.tif", dir + "/a.tif"]))
    #expect(values(both) == [5, 6, 7, 8, 1, 2, 3, 4])
    do { _ = try ImageReader.read(.channelFiles([dir + "/a.tif", dir + "/c.tif"])); Issue.record("size mismatch") }
    catch let e as CytoError { #expect(e.kind == .shapeMismatch && e.path == dir + "/c.tif") }
    let picked = try ImageReader.read(.file(dir + "/a.tif", channels: [0, 0]))
    #expect(picked.channels == 2)
    #expect(throws: CytoError.self) { try ImageReader.read(.file(dir + "/a.tif", channels: [1])) }
}

// MARK: Display, montage, features

@Test func displayColoursAndStretch() throws {
    // Channel 0 a ramp 0..30 (red), channel 1 constant (green, empty after min-max stretch).
    let planes: [Float] = [0, 10, 20, 30, 7, 7, 7, 7]
    let rgb = planes.withUnsafeBufferPointer {
        DisplayMapping(colours: [RGBColour(1, 0, 0), RGBColour(0, 1, 0)], stretch: .minMax).render($0, channels: 2, width: 4, height: 1)
    }
    #expect(values(rgb) == [0, 85, 170, 255, 0, 0, 0, 0, 0, 0, 0, 0])
    #expect(throws: CytoError.self) { try DisplayMapping.parseColours("red,purple") }
    #expect(try DisplayMapping.parseColours("#ff8000") == [RGBColour(1, 128.0 / 255, 0)])
}

@Test func montageLaysTilesInRowsWithGaps() throws {
    let tile = PixelImage(width: 2, height: 1, channels: 3, sampleType: .uint8, storage: [1, 1, 2, 2, 3, 3])
    let m = try Montage.rows([[tile, tile], [tile]], gap: 1, background: 9)
    #expect(m.width == 2 * 2 + 3 && m.height == 2 * 1 + 3)
    // Red plane: row 1 holds two tiles, row 3 one.
    #expect(values(m).prefix(m.width * m.height) == [9, 9, 9, 9, 9, 9, 9,
                                                   9, 1, 1, 9, 1, 1, 9,
                                                   9, 9, 9, 9, 9, 9, 9,
                                                   9, 1, 1, 9, 9, 9, 9,
                                                   9, 9, 9, 9, 9, 9, 9])
    #expect(throws: CytoError.self) { try Montage.grid([tile, PixelImage(width: 3, height: 1, channels: 3, sampleType: .uint8)], columns: 2) }
}

@Test func featuresOfARectangularNucleus() {
    // 21x21, DNA: a 9 wide x 5 high block of 100 on 0, centred; tubulin constant 3.
    var dna = [UInt16](repeating: 0, count: 441)
    for y in 8..<13 { for x in 6..<15 { dna[y * 21 + x] = 100 } }
    let im = image(dna + [UInt16](repeating: 3, count: 441), channels: 2, width: 21, height: 21)
    let f = CellFeatures.compute(im)
    let names = CellFeatures.names(channelNames: ["DNA", "Tub"])
    #expect(names.count == f.count && names[0] == "Intensity_Mean_DNA" && names[8] == "Shape_Area")
    let mean = 4500.0 / 441
    let std = (45.0 / 441 * (100 - mean) * (100 - mean) + 396.0 / 441 * mean * mean).squareRoot()
    #expect(abs(Double(f[0]) - mean) < 1e-4 && abs(Double(f[1]) - std) < 1e-3 && f[2] == 100)
    #expect(f[3] == 100)  // rank 0.9 * 440 = 396: the first bright value after 396 background zeros
    #expect(f[4] == 3 && f[5] == 0 && f[6] == 3 && f[7] == 3)
    let l1 = (81.0 - 1) / 12, l2 = (25.0 - 1) / 12
    #expect(f[8] == 45)
    #expect(abs(Double(f[9]) - (1 - l2 / l1).squareRoot()) < 1e-5)
    #expect(abs(Double(f[10]) - 4 * l1.squareRoot()) < 1e-4 && abs(Double(f[11]) - 4 * l2.squareRoot()) < 1e-4)
    #expect(abs(f[12]) < 1e-6 && abs(Double(f[13]) - 45.0 / 441) < 1e-6)
}

@Test func otsuSeparatesTwoModes() {
    let v: [Float] = Array(repeating: 10, count: 50) + Array(repeating: 200, count: 30)
    let t = CellFeatures.otsuThreshold(v)!
    #expect(t > 10 && t <= 200)
    #expect(CellFeatures.otsuThreshold([5, 5, 5]) == nil)
    #expect(CellFeatures.otsuThreshold([.infinity, 1, 2, .nan]) != nil)
}

// MARK: Crop specs and manifests

@Test func cropSpecsRoundTripThroughJSON() throws {
    let specs = [CropSpec.file("a.tif"),
                 CropSpec(source: .file("f.tif", channels: [2, 0]), region: .centre(x: 10.5, y: 3), mask: MaskSpec(path: "m.tif", label: 4)),
                 CropSpec(source: .channelFiles(["d.tif", "t.tif", "a.tif"]), region: .box(x0: -3, y0: 1, x1: 20, y1: 9),
                          mask: MaskSpec(path: "m.tif"))]
    for s in specs { #expect(try CropSpec(json: try JSON.parse(s.json.serialized)) == s) }
    for (bad, field) in [(#"{"centre":[1,2]}"#, "path"), (#"{"path":"a","centre":[1]}"#, "centre"),
                         (#"{"path":"a","box":[1,2,3.5,4]}"#, "box"), (#"{"paths":[]}"#, "paths"),
                         (#"{"path":"a","label":3}"#, "label"), (#"{"path":"a","channels":[-1]}"#, "channels")] {
        do { _ = try CropSpec(json: try JSON.parse(bad)); Issue.record("accepted \(bad)") }
        catch let e as CytoError { #expect(e.field == field, "\(bad): \(e)") }
    }
}

@Test func manifestsGiveSpecsAndMetadata() throws {
    let dir = try tempDir()
    try ImageWriter.writeTIFF(image((1...16).map { UInt16($0) }, width: 4, height: 4), to: dir + "/a.tif")
    let text = "path,Metadata_Well,x,y\na.tif,B02,1,2\n\"a.tif\",\"B,03\",3.5,0\n"
    try AtomicFile.write(Array(text.utf8), to: dir + "/m.csv")
    var cols = CropManifest.Columns()
    cols.centreX = "x"; cols.centreY = "y"
    let m = try CropManifest(path: dir + "/m.csv", columns: cols)
    #expect(m.metadataNames == ["Metadata_Well"] && m.metadata == [["B02"], ["B,03"]])
    #expect(m.specs == [CropSpec(source: .file(dir + "/a.tif"), region: .centre(x: 1, y: 2)),
                        CropSpec(source: .file(dir + "/a.tif"), region: .centre(x: 3.5, y: 0))])
    // The key columns of a CellProfiler object table are carried by default, in file order;
    // an explicit list replaces them, and a name it gives that the file lacks is an error naming it.
    let keyed = "ImageNumber,path,ObjectNumber,Location_Center_X,Location_Center_Y,AreaShape_Area,Metadata_Well\n1,a.tif,7,1,2,40,B02\n"
    try AtomicFile.write(Array(keyed.utf8), to: dir + "/k.csv")
    var kc = CropManifest.Columns()
    kc.centreX = "Location_Center_X"; kc.centreY = "Location_Center_Y"
    let k = try CropManifest(path: dir + "/k.csv", columns: kc)
    #expect(k.metadataNames == ["ImageNumber", "ObjectNumber", "Location_Center_X", "Location_Center_Y", "Metadata_Well"])
    #expect(k.metadata == [["1", "7", "1", "2", "B02"]])
    kc.carried = ["AreaShape_*", "ObjectNumber"]
    #expect(try CropManifest(path: dir + "/k.csv", columns: kc).metadataNames == ["ObjectNumber", "AreaShape_Area", "Metadata_Well"])
    kc.carried = ["TableNumber"]
    do { _ = try CropManifest(path: dir + "/k.csv", columns: kc); Issue.record("kept a column the file lacks") }
    catch let e as CytoError { #expect(e.field == "TableNumber" && e.message.contains("TableNumber")) }
    cols.centreX = "nope"
    do { _ = try CropManifest(path: dir + "/m.csv", columns: cols); Issue.record("missing column") }
    catch let e as CytoError { #expect(e.field == "nope" && e.path == dir + "/m.csv") }
    // A batch with one bad crop: the good one loads, the bad slot is -1 with its error.
    let loader = CropLoader(preprocessing: Preprocessing(size: 4, channels: 1, normalization: .perCropMax, resize: .padCrop))
    var out = [Float](repeating: 0, count: 32)
    let errors = out.withUnsafeMutableBufferPointer {
        loader.loadBatch([.file(dir + "/a.tif"), .file(dir + "/missing.tif")], into: $0)
    }
    #expect(errors[0] == nil && errors[1]?.kind == .fileNotFound && errors[1]?.index == 1)
    let want: [Float] = (1...16).map { (v: Int) -> Float in Float(v) / 16 * 2 - 1 }
    #expect(close(Array(out[0..<16]), want))
    #expect(out[16..<32].allSatisfy { $0 == -1 })
}
