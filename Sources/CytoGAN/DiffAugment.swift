import CytoCore
import CytoNN

/// What differentiable augmentation does to each image the discriminator sees (Zhao et al. 2020,
/// "Differentiable Augmentation for Data-Efficient GAN Training"): a colour jitter per channel
/// (DiffAugment's brightness and contrast, drawn for each stain on its own: an offset uniform in
/// ±`brightness` and a factor uniform in 1 ± `contrast` on the deviations from that channel's
/// mean), then a random integer translation of up to `translation` x side in each direction, and
/// a cutout square of `cutout` x side at a random position. Uncovered and cut pixels take `fill`
/// (-1: the model range's black, i.e. no stain, rather than DiffAugment's mid-grey 0).
public struct DiffAugmentPolicy: Sendable, Equatable {
    public var translation: Float
    public var cutout: Float
    public var fill: Float
    /// Largest offset added to a channel, in model units (the range [-1, 1] is 2 wide).
    public var brightness: Float
    /// Largest relative change of a channel's contrast around its mean.
    public var contrast: Float

    public init(translation: Float = 0, cutout: Float = 0, fill: Float = -1, brightness: Float = 0, contrast: Float = 0) {
        self.translation = translation; self.cutout = cutout; self.fill = fill
        self.brightness = brightness; self.contrast = contrast
    }

    /// No augmentation (the paper).
    public static let none = DiffAugmentPolicy()
    /// DiffAugment's "translation,cutout" policy: shifts up to 1/8 of the side, a square of half the side.
    public static let translationCutout = DiffAugmentPolicy(translation: 0.125, cutout: 0.5)

    public var isIdentity: Bool { translation == 0 && cutout == 0 && !hasColour }
    /// True when the policy jitters brightness or contrast.
    public var hasColour: Bool { brightness != 0 || contrast != 0 }

    /// The policy as JSON; brightness and contrast only when set, so configurations written
    /// before the colour jitter existed read and write back unchanged.
    public var json: JSON {
        var o: [String: JSON] = ["translation": .float(translation), "cutout": .float(cutout), "fill": .float(fill)]
        if brightness != 0 { o["brightness"] = .float(brightness) }
        if contrast != 0 { o["contrast"] = .float(contrast) }
        return .object(o)
    }

    /// Each parameter's JSON key and allowed values: the one list that parsing and `validate` check.
    static let ranges: [String: ClosedRange<Double>] = [
        "translation": 0...0.5, "cutout": 0...1, "fill": -1...1, "brightness": 0...1, "contrast": 0...0.99,
    ]

    /// Throws, naming the parameter, when one lies outside its range (see `ranges`).
    public func validate() throws {
        for (key, value) in [("translation", translation), ("cutout", cutout), ("fill", fill),
                             ("brightness", brightness), ("contrast", contrast)] {
            try Self.check(key, Double(value))
        }
    }

    /// `value`, or an error naming `key` unless it is a number within `key`'s range.
    @discardableResult
    private static func check(_ key: String, _ value: Double?) throws -> Double {
        let range = ranges[key]!
        guard let value, range.contains(value) else {
            throw CytoError(.invalidInput, "diff_augment: '\(key)' must be a number in [\(range.lowerBound), \(range.upperBound)]", field: key)
        }
        return value
    }

    /// Parses `{translation, cutout, fill, brightness, contrast}` (missing keys: 0, 0, -1, 0, 0),
    /// each within its range in `ranges`.
    public init(json: JSON) throws {
        guard case .object(let o) = json else {
            throw CytoError(.invalidInput, "diff_augment must be an object, got \(json.typeName)", field: "diff_augment")
        }
        func fraction(_ k: String, _ d: Float) throws -> Float {
            guard let v = o[k], !v.isNull else { return d }
            return Float(try Self.check(k, v.doubleValue))
        }
        translation = try fraction("translation", 0)
        cutout = try fraction("cutout", 0)
        fill = try fraction("fill", -1)
        brightness = try fraction("brightness", 0)
        contrast = try fraction("contrast", 0)
    }
}

/// Applies a `DiffAugmentPolicy` to NCHW batches and back-propagates through it exactly, so the
/// generator learns through the same transforms the discriminator sees. Each `forward` draws
/// fresh transforms (one per image) from `rng`; `backward` applies the transpose of the last
/// forward's transforms. Buffers grow to the largest batch once; a step allocates nothing after.
public final class DiffAugment {
    /// One image's transform: the colour jitter of each channel (`offsets` and `factors`, empty
    /// for none), then the shift (dy, dx) and the cutout square's top-left corner (cy, cx).
    public struct Transform: Sendable, Equatable {
        public var dy: Int, dx: Int, cy: Int, cx: Int
        /// Per channel: added to every pixel after the contrast change.
        public var offsets: [Float]
        /// Per channel: multiplies each pixel's deviation from the channel's mean.
        public var factors: [Float]
        public init(dy: Int, dx: Int, cy: Int, cx: Int, offsets: [Float] = [], factors: [Float] = []) {
            self.dy = dy; self.dx = dx; self.cy = cy; self.cx = cx
            self.offsets = offsets; self.factors = factors
        }
    }

    public let policy: DiffAugmentPolicy
    public var rng: RandomStream
    public let output = Tensor(Shape(0))
    public let inputGradient = Tensor(Shape(0))
    /// The colour-jittered batch before the shift and cutout (unused without colour jitter).
    private let coloured = Tensor(Shape(0))
    /// The last forward's transforms, one per image.
    public private(set) var transforms: [Transform] = []
    /// In data-parallel training, where this process's images sit in the global batch: each
    /// forward draws the transforms of the whole global batch and applies this slice's, so the
    /// stream and the transforms match a single process's (nil: the whole batch).
    public var slice: BatchSlice?
    /// Where the transforms of other processes' images are drawn to.
    private var discarded = Transform(dy: 0, dx: 0, cy: 0, cx: 0)

    public init(policy: DiffAugmentPolicy, rng: RandomStream) {
        self.policy = policy
        self.rng = rng
    }

    /// Side lengths of the cutout square for an h x w image.
    func cutoutSize(_ h: Int, _ w: Int) -> (Int, Int) {
        (Int(policy.cutout * Float(h) + 0.5), Int(policy.cutout * Float(w) + 0.5))
    }

    /// Draws one transform per image of `x` from `rng` and applies them (see `forward(_:transforms:)`).
    public func forward(_ x: Tensor) throws -> Tensor {
        guard x.shape.rank == 4 else {
            throw CytoError(.shapeMismatch, "diff augment: expects an NCHW batch, got \(x.shape)")
        }
        let n = x.shape[0], planes = x.shape[1], h = x.shape[2], w = x.shape[3]
        let maxDy = Int(policy.translation * Float(h) + 0.5), maxDx = Int(policy.translation * Float(w) + 0.5)
        let (ch, cw) = cutoutSize(h, w)
        // Keep each image's colour arrays (no allocation after the first batch of this size).
        if transforms.count != n { transforms = Array(repeating: Transform(dy: 0, dx: 0, cy: 0, cx: 0), count: n) }
        guard let slice, !slice.isWhole else {
            for i in 0..<n { draw(into: &transforms[i], planes: planes, h: h, w: w, maxDy: maxDy, maxDx: maxDx, ch: ch, cw: cw) }
            return apply(x)
        }
        // Data-parallel: draw the whole global batch's transforms in order, keep this slice's.
        guard n % slice.local == 0 else {
            throw CytoError(.shapeMismatch, "diff augment: a batch of \(n) is not whole blocks of this process's \(slice.local) items")
        }
        for k in 0..<(n / slice.local) {
            for r in 0..<slice.global {
                let mine = r >= slice.offset && r < slice.offset + slice.local
                if mine {
                    draw(into: &transforms[k * slice.local + r - slice.offset], planes: planes, h: h, w: w, maxDy: maxDy, maxDx: maxDx, ch: ch, cw: cw)
                } else {
                    draw(into: &discarded, planes: planes, h: h, w: w, maxDy: maxDy, maxDx: maxDx, ch: ch, cw: cw)
                }
            }
        }
        return apply(x)
    }

    /// Draws one image's transform from `rng` into `t` (the same draws in the same order for every image).
    private func draw(into t: inout Transform, planes: Int, h: Int, w: Int, maxDy: Int, maxDx: Int, ch: Int, cw: Int) {
        let dy = maxDy > 0 ? rng.below(2 * maxDy + 1) - maxDy : 0
        let dx = maxDx > 0 ? rng.below(2 * maxDx + 1) - maxDx : 0
        // The cutout's centre is uniform over the image (as DiffAugment); the square may hang over the edge.
        let cy = ch > 0 ? rng.below(h + (1 - ch % 2)) - ch / 2 : 0
        let cx = cw > 0 ? rng.below(w + (1 - cw % 2)) - cw / 2 : 0
        t.dy = dy; t.dx = dx; t.cy = cy; t.cx = cx
        if policy.hasColour {
            if t.offsets.count != planes {
                t.offsets = Array(repeating: 0, count: planes)
                t.factors = Array(repeating: 1, count: planes)
            }
            for c in 0..<planes {
                t.offsets[c] = policy.brightness > 0 ? rng.uniform(-policy.brightness, policy.brightness) : 0
                t.factors[c] = policy.contrast > 0 ? rng.uniform(1 - policy.contrast, 1 + policy.contrast) : 1
            }
        } else if !t.offsets.isEmpty {
            t.offsets = []; t.factors = []
        }
    }

    /// The batch with the given transforms (in `output`): each channel jittered,
    /// j = factor x (x - the plane's mean) + the plane's mean + offset, then
    /// out[c, h, w] = j[c, h - dy, w - dx], `fill` where that falls outside the image or inside
    /// the cutout square [cy, cy + cutout h) x [cx, cx + cutout w).
    public func forward(_ x: Tensor, transforms t: [Transform]) throws -> Tensor {
        guard x.shape.rank == 4, t.count == x.shape[0],
              t.allSatisfy({ ($0.offsets.isEmpty || $0.offsets.count == x.shape[1]) && $0.factors.count == $0.offsets.count }) else {
            throw CytoError(.shapeMismatch, "diff augment: \(t.count) transform(s) for a batch of shape \(x.shape)")
        }
        transforms = t
        return apply(x)
    }

    private func apply(_ x: Tensor) -> Tensor {
        var source = x
        if transforms.contains(where: { !$0.offsets.isEmpty }) {
            coloured.resize(x.shape)
            let src = x.data, dst = coloured.data
            forEachPlane(x.shape) { i, c, base, count in
                let t = transforms[i]
                guard !t.offsets.isEmpty else {
                    for k in base..<(base + count) { dst[k] = src[k] }
                    return
                }
                var sum: Float = 0
                for k in base..<(base + count) { sum += src[k] }
                let mean = sum / Float(count), f = t.factors[c]
                let shift = (1 - f) * mean + t.offsets[c]
                for k in base..<(base + count) { dst[k] = f * src[k] + shift }
            }
            source = coloured
        }
        output.resize(x.shape)
        output.fill(policy.fill)
        let src = source.data, dst = output.data
        forEachCopiedPixel(x.shape) { o, i in dst[o] = src[i] }
        return output
    }

    /// The gradient with respect to the last forward's input (in `inputGradient`): each output
    /// pixel's gradient goes back to the input pixel it was copied from (filled ones pass none),
    /// then through the colour jitter: g x factor + (1 - factor) x the plane's mean of g.
    public func backward(_ g: Tensor) throws -> Tensor {
        guard g.shape == output.shape, g.shape.rank == 4, g.shape[0] == transforms.count else {
            throw CytoError(.shapeMismatch, "diff augment: gradient \(g.shape) does not match the last forward's output \(output.shape)")
        }
        inputGradient.resize(g.shape)
        inputGradient.fill(0)
        let src = g.data, dst = inputGradient.data
        forEachCopiedPixel(g.shape) { o, i in dst[i] += src[o] }
        if transforms.contains(where: { !$0.offsets.isEmpty }) {
            forEachPlane(g.shape) { i, c, base, count in
                let t = transforms[i]
                guard !t.offsets.isEmpty else { return }
                var sum: Float = 0
                for k in base..<(base + count) { sum += dst[k] }
                let f = t.factors[c], shift = (1 - f) * sum / Float(count)
                for k in base..<(base + count) { dst[k] = f * dst[k] + shift }
            }
        }
        return inputGradient
    }

    /// `body(image, channel, first flat index, pixels)` for every plane of an NCHW shape.
    @inline(__always)
    private func forEachPlane(_ shape: Shape, _ body: (Int, Int, Int, Int) -> Void) {
        let planes = shape[1], count = shape[2] * shape[3]
        for i in 0..<shape[0] {
            for c in 0..<planes { body(i, c, (i * planes + c) * count, count) }
        }
    }

    /// The one description of the last forward's transforms that forward and backward share:
    /// `body(o, i)` for every output pixel o (flat NCHW index) that is a copy of input pixel i
    /// (inside the image after the shift, outside the cutout). Every other output pixel is fill.
    @inline(__always)
    private func forEachCopiedPixel(_ shape: Shape, _ body: (Int, Int) -> Void) {
        let n = shape[0], planes = shape[1], h = shape[2], w = shape[3]
        let (ch, cw) = cutoutSize(h, w)
        for i in 0..<n {
            let p = transforms[i]
            for c in 0..<planes {
                let base = (i * planes + c) * h * w
                for r in 0..<h {
                    let sr = r - p.dy
                    guard sr >= 0, sr < h else { continue }
                    let rowCut = r >= p.cy && r < p.cy + ch
                    for col in 0..<w {
                        let sc = col - p.dx
                        guard sc >= 0, sc < w, !(rowCut && col >= p.cx && col < p.cx + cw) else { continue }
                        body(base + r * w + col, base + sr * w + sc)
                    }
                }
            }
        }
    }
}
