import CytoCore

/// How a crop is brought to the model's size; chosen explicitly, stored with a model.
public enum ResizeMode: String, Sendable, CaseIterable {
    /// Per axis: area averaging when shrinking, bilinear when enlarging (identity when equal).
    case resample
    /// Area averaging (box filter with fractional pixel coverage) on both axes.
    case area
    /// Bilinear, pixel centres aligned (align_corners=False), edges clamped.
    case bilinear
    /// No resampling: centred zero padding where the crop is smaller, centred cropping where larger.
    case padCrop = "pad_crop"
}

/// Resampling weights along one axis, `taps` per output (unused taps have weight 0):
/// output i = sum over k of weight[i*taps+k] * input[index[i*taps+k]] + pad[i] * fill, where
/// pad[i] is 1 for an output no input covers (pad_crop padding) and 0 otherwise.
struct AxisTaps {
    var taps = 1
    var index: [Int32] = []
    var weight: [Float] = []
    var pad: [Float] = []

    init(input n: Int, output m: Int, mode: ResizeMode) {
        let shrinking = m < n
        let effective: ResizeMode = mode == .resample ? (n == m ? .padCrop : (shrinking ? .area : .bilinear)) : mode
        var lists: [[(Int32, Float)]] = []
        for i in 0..<m {
            var list: [(Int32, Float)] = []
            switch effective {
            case .area:
                // Output pixel i covers input interval [i*s, (i+1)*s), s = n/m.
                let a = Double(i) * Double(n) / Double(m), b = Double(i + 1) * Double(n) / Double(m)
                var j = Int(a.rounded(.down))
                while Double(j) < b && j < n {
                    let overlap = min(b, Double(j + 1)) - max(a, Double(j))
                    if overlap > 1e-12 { list.append((Int32(j), Float(overlap * Double(m) / Double(n)))) }
                    j += 1
                }
            case .bilinear:
                var x = (Double(i) + 0.5) * Double(n) / Double(m) - 0.5
                x = min(max(x, 0), Double(n - 1))
                let j0 = Int(x.rounded(.down)), f = x - Double(j0)
                let j1 = min(j0 + 1, n - 1)
                if f == 0 || j1 == j0 { list.append((Int32(j0), 1)) }
                else { list = [(Int32(j0), Float(1 - f)), (Int32(j1), Float(f))] }
            case .padCrop, .resample:
                // Centred: output i shows input i - offset, nothing (padding) outside.
                let j = i - floorDiv(m - n, 2)
                if j >= 0 && j < n { list.append((Int32(j), 1)) }
            }
            lists.append(list)
        }
        taps = max(1, lists.map(\.count).max() ?? 1)
        for list in lists {
            for k in 0..<taps {
                index.append(k < list.count ? list[k].0 : 0)
                weight.append(k < list.count ? list[k].1 : 0)
            }
            pad.append(list.isEmpty ? 1 : 0)
        }
    }
}

/// Floor division (rounds toward minus infinity).
@inline(__always)
func floorDiv(_ a: Int, _ b: Int) -> Int {
    let q = a / b
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q
}

/// A separable resampler from one input size to one output size, with its weights computed once
/// and reused for every crop of that size (no allocation per crop).
public final class Resampler {
    public let inputWidth: Int, inputHeight: Int, outputWidth: Int, outputHeight: Int
    public let mode: ResizeMode
    private let xTaps: AxisTaps, yTaps: AxisTaps
    private var temp: [Float]

    public init(inputWidth: Int, inputHeight: Int, outputWidth: Int, outputHeight: Int, mode: ResizeMode) {
        precondition(inputWidth > 0 && inputHeight > 0 && outputWidth > 0 && outputHeight > 0)
        self.inputWidth = inputWidth; self.inputHeight = inputHeight
        self.outputWidth = outputWidth; self.outputHeight = outputHeight
        self.mode = mode
        xTaps = AxisTaps(input: inputWidth, output: outputWidth, mode: mode)
        yTaps = AxisTaps(input: inputHeight, output: outputHeight, mode: mode)
        temp = [Float](repeating: 0, count: inputHeight * outputWidth)
    }

    /// Resamples `channels` planes (CHW) from `input` into `output`. Output pixels that no input
    /// covers (pad_crop padding) get `fill`.
    public func apply(_ input: UnsafePointer<Float>, channels: Int, into output: UnsafeMutablePointer<Float>, fill: Float) {
        let iw = inputWidth, ih = inputHeight, ow = outputWidth, oh = outputHeight
        let kx = xTaps.taps, ky = yTaps.taps
        temp.withUnsafeMutableBufferPointer { tb in
            let t = tb.baseAddress!
            xTaps.index.withUnsafeBufferPointer { xi in xTaps.weight.withUnsafeBufferPointer { xw in xTaps.pad.withUnsafeBufferPointer { xp in
            yTaps.index.withUnsafeBufferPointer { yi in yTaps.weight.withUnsafeBufferPointer { yw in yTaps.pad.withUnsafeBufferPointer { yp in
                for c in 0..<channels {
                    let src = input + c * iw * ih, dst = output + c * ow * oh
                    // Horizontal pass: ih rows of ow samples into temp (a gather per output).
                    for r in 0..<ih {
                        let row = src + r * iw, out = t + r * ow
                        switch kx {
                        case 1:
                            for o in 0..<ow { out[o] = xw[o] * row[Int(xi[o])] + xp[o] * fill }
                        case 2:
                            for o in 0..<ow {
                                out[o] = xw[2 * o] * row[Int(xi[2 * o])] + xw[2 * o + 1] * row[Int(xi[2 * o + 1])]
                            }
                        default:
                            for o in 0..<ow {
                                var acc: Float = 0
                                for k in 0..<kx { acc += xw[o * kx + k] * row[Int(xi[o * kx + k])] }
                                out[o] = acc
                            }
                        }
                    }
                    // Vertical pass: each output row a weighted sum of temp rows (vectorizes).
                    for o in 0..<oh {
                        let out = dst + o * ow
                        let base = yp[o] * fill
                        let w0 = yw[o * ky], r0 = t + Int(yi[o * ky]) * ow
                        for x in 0..<ow { out[x] = w0 * r0[x] + base }
                        for k in 1..<max(ky, 1) {
                            let w = yw[o * ky + k], r = t + Int(yi[o * ky + k]) * ow
                            if w == 0 { continue }
                            for x in 0..<ow { out[x] += w * r[x] }
                        }
                    }
                }
            } } }
            } } }
        }
    }
}
