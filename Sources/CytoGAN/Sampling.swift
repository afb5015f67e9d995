import CytoCore
import CytoNN

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// How to walk between two noise vectors.
public enum InterpolationMode: String, Sendable, CaseIterable {
    /// Straight line: (1 - t) a + t b.
    case linear
    /// Spherical (great circle through a and b, Shoemake's slerp): keeps the norm of unit vectors
    /// and stays in the shell where Gaussian noise of high dimension lives.
    case slerp
}

/// Arithmetic in the generator's noise space: interpolation and vector algebra (CytoGAN, Fig. 4
/// and 5). Vectors are plain [Float] of the latent size.
public enum NoiseSpace {
    /// (1 - t) a + t b.
    public static func lerp(_ a: [Float], _ b: [Float], t: Float) -> [Float] {
        precondition(a.count == b.count)
        return zip(a, b).map { (1 - t) * $0 + t * $1 }
    }

    /// Spherical interpolation: sin((1-t) w)/sin w * a + sin(t w)/sin w * b, w the angle between a
    /// and b. Falls back to `lerp` when the vectors are (anti)parallel or one is zero, where the
    /// great circle is not defined.
    public static func slerp(_ a: [Float], _ b: [Float], t: Float) -> [Float] {
        precondition(a.count == b.count)
        var dot = 0.0, na = 0.0, nb = 0.0
        for i in 0..<a.count {
            dot += Double(a[i]) * Double(b[i]); na += Double(a[i]) * Double(a[i]); nb += Double(b[i]) * Double(b[i])
        }
        guard na > 0, nb > 0 else { return lerp(a, b, t: t) }
        let cosw = max(-1, min(1, dot / (na * nb).squareRoot()))
        let w = acos(cosw), s = sin(w)
        guard s > 1e-6 else { return lerp(a, b, t: t) }
        let ka = sin((1 - Double(t)) * w) / s, kb = sin(Double(t) * w) / s
        return zip(a, b).map { Float(ka * Double($0) + kb * Double($1)) }
    }

    /// `steps` vectors from a to b inclusive (steps >= 2), evenly spaced in t.
    public static func interpolate(_ a: [Float], _ b: [Float], steps: Int, mode: InterpolationMode) throws -> [[Float]] {
        guard steps >= 2 else { throw CytoError(.invalidInput, "interpolation needs at least 2 steps, got \(steps)", field: "steps") }
        guard a.count == b.count else {
            throw CytoError(.shapeMismatch, "interpolation endpoints have \(a.count) and \(b.count) dimensions")
        }
        return (0..<steps).map { i in
            let t = Float(i) / Float(steps - 1)
            return mode == .linear ? lerp(a, b, t: t) : slerp(a, b, t: t)
        }
    }

    /// a - b + c (e.g. a treated cell minus a control plus another control).
    public static func algebra(_ a: [Float], minus b: [Float], plus c: [Float]) throws -> [Float] {
        guard a.count == b.count, b.count == c.count else {
            throw CytoError(.shapeMismatch, "noise algebra needs vectors of one size, got \(a.count), \(b.count), \(c.count)")
        }
        return (0..<a.count).map { a[$0] - b[$0] + c[$0] }
    }

    /// `count` draws from N(0, I) of `latent` dimensions (count x latent, row-major) from `seed`.
    public static func draw(count: Int, latent: Int, seed: UInt64) -> [Float] {
        var rng = RandomStream(seed: seed, purpose: "samples")
        var z = [Float](repeating: 0, count: count * latent)
        rng.fillNormal(&z)
        return z
    }
}

/// Runs a model's generator on noise vectors, in batches, in inference mode (BatchNorm uses its
/// running statistics, so a cell does not depend on the others in its batch).
public final class Sampler {
    public let model: GANModel
    public let batchSize: Int
    /// The generator that draws: the model's moving average when it keeps one and `averaged`.
    public let generator: Network
    private let z = Tensor(Shape(0))

    public init(model: GANModel, batchSize: Int = 64, averaged: Bool = true) {
        self.model = model
        self.batchSize = max(1, batchSize)
        generator = averaged ? model.outputGenerator : model.generator
    }

    /// Floats in one generated image (channels x size x size).
    public var imageCount: Int { let a = model.config.architecture; return a.channels * a.size * a.size }

    /// Images for `vectors` (count x latent, row-major): count x C x S x S values in [-1, 1].
    public func generate(_ vectors: [Float]) throws -> [Float] {
        let latent = model.config.architecture.latent
        guard vectors.count % latent == 0 else {
            throw CytoError(.shapeMismatch, "noise vectors hold \(vectors.count) values, not a multiple of the latent size \(latent)")
        }
        let n = vectors.count / latent, per = imageCount
        var out = [Float](repeating: 0, count: n * per)
        let g = generator
        let wasTraining = g.training
        g.training = false
        defer { g.training = wasTraining }
        var start = 0
        while start < n {
            let b = min(batchSize, n - start)
            z.resize(Shape(b, latent))
            vectors.withUnsafeBufferPointer { z.data.update(from: $0.baseAddress! + start * latent, count: b * latent) }
            let images = try g.forward(z)
            out.withUnsafeMutableBufferPointer { ($0.baseAddress! + start * per).update(from: images.data, count: b * per) }
            start += b
        }
        return out
    }
}
