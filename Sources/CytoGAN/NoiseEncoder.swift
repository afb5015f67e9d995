import CytoCore
import CytoNN

/// Maps REAL cells into the generator's noise space, so interpolation and algebra can start from
/// real cells (the step the paper names as missing). For each cell, z is found by Adam on
///   L(z) = mean_pixels (G(z) - x)^2
///        + featureWeight * mean_k (f(G(z))_k - f(x)_k)^2 / mean_k f(x)_k^2
///        + priorWeight * (|z| / sqrt(latent) - 1)^2,
/// f the discriminator's representation (noise off), G in inference mode; the last term keeps z
/// on the shell where N(0, I) noise lives. Several random starts per cell; the best is kept.
/// Cells are independent (no BatchNorm statistics shared), so they are optimized in batches.
public final class NoiseEncoder {
    /// Settings of the optimization.
    public struct Options: Sendable, Equatable {
        public var iterations: Int
        public var learningRate: Float
        public var featureWeight: Float
        public var priorWeight: Float
        /// Random starting points per cell; the one with the lowest final loss is kept.
        public var restarts: Int
        public var seed: UInt64
        /// Cells optimized together (times `restarts` rows per batch).
        public var batchSize: Int
        public init(iterations: Int = 300, learningRate: Float = 0.05, featureWeight: Float = 1, priorWeight: Float = 0.1,
                    restarts: Int = 2, seed: UInt64 = 1, batchSize: Int = 32) {
            self.iterations = iterations; self.learningRate = learningRate; self.featureWeight = featureWeight
            self.priorWeight = priorWeight; self.restarts = restarts; self.seed = seed; self.batchSize = batchSize
        }
    }

    /// The encoding of a list of cells.
    public struct Result {
        /// Noise vectors, cells x latent (row-major).
        public var z: [Float]
        /// G(z) for each cell, cells x C x S x S in [-1, 1].
        public var reconstructions: [Float]
        /// Mean squared pixel error of each reconstruction (inputs in [-1, 1]).
        public var pixelError: [Float]
        /// Relative squared error of the representation: |f(G(z)) - f(x)|^2 / |f(x)|^2.
        public var featureError: [Float]
        /// Mean total loss over the batch at each iteration, for the first batch (convergence).
        public var lossCurve: [Float]
    }

    public let model: GANModel
    public let options: Options
    private let target = Tensor(Shape(0))
    private let gradImage = Tensor(Shape(0))
    private let gradFeature = Tensor(Shape(0))
    private var targetFeatures: [Float] = []
    private var featureScale: [Float] = []

    public init(model: GANModel, options: Options = Options()) throws {
        guard options.iterations >= 0, options.restarts >= 1, options.batchSize >= 1, options.learningRate > 0 else {
            throw CytoError(.invalidInput, "encode: iterations >= 0, restarts >= 1, batch size >= 1 and a positive learning rate are needed")
        }
        self.model = model
        self.options = options
    }

    /// Encodes `count` cells given as model inputs (count x C x S x S in [-1, 1]).
    public func encode(_ images: [Float], count: Int) throws -> Result {
        let a = model.config.architecture
        let per = a.channels * a.size * a.size, latent = a.latent
        guard images.count == count * per else {
            throw CytoError(.shapeMismatch, "encode: \(images.count) values are not \(count) images of \(a.channels)x\(a.size)x\(a.size)")
        }
        var result = Result(z: [Float](repeating: 0, count: count * latent), reconstructions: [Float](repeating: 0, count: count * per),
                            pixelError: [Float](repeating: 0, count: count), featureError: [Float](repeating: 0, count: count), lossCurve: [])
        var rng = RandomStream(seed: options.seed, purpose: "encode")
        let g = model.outputGenerator, d = model.discriminator
        let gTraining = g.training, dTraining = d.training
        g.training = false
        d.training = false
        defer { g.training = gTraining; d.training = dTraining }
        var start = 0
        while start < count {
            let cells = min(options.batchSize, count - start)
            let rows = cells * options.restarts
            // Targets: each cell repeated once per restart (row r = restart * cells + cell).
            target.resize(Shape(rows, a.channels, a.size, a.size))
            images.withUnsafeBufferPointer { src in
                for r in 0..<rows { (target.data + r * per).update(from: src.baseAddress! + (start + r % cells) * per, count: per) }
            }
            let f = try d.forward(target, through: DCGANArchitecture.representationLayer)
            let width = f.shape.itemCount
            targetFeatures = f.values
            featureScale = (0..<rows).map { r in
                var s: Float = 0
                for k in 0..<width { s += targetFeatures[r * width + k] * targetFeatures[r * width + k] }
                return max(s / Float(width), 1e-8)
            }
            let z = Parameter(name: "z", shape: Shape(rows, latent))
            rng.fillNormal(z.value.buffer)
            let adam = Adam(parameters: [z], learningRate: LearningRate(options.learningRate), beta1: 0.9, beta2: 0.999)
            var losses = [Double](repeating: 0, count: rows)
            for it in 0...options.iterations {
                let withGradient = it < options.iterations
                try evaluate(z: z, rows: rows, per: per, width: width, losses: &losses, gradient: withGradient,
                             pixel: nil, feature: nil)
                if start == 0 { result.lossCurve.append(Float(losses.reduce(0, +) / Double(rows))) }
                if withGradient { adam.update() }
            }
            // Best restart per cell, then its reconstruction and errors.
            var pixel = [Double](repeating: 0, count: rows), feature = [Double](repeating: 0, count: rows)
            try evaluate(z: z, rows: rows, per: per, width: width, losses: &losses, gradient: false, pixel: &pixel, feature: &feature)
            let recon = try g.forward(z.value)
            for c in 0..<cells {
                var best = c
                for k in 1..<options.restarts where losses[k * cells + c] < losses[best] { best = k * cells + c }
                let cell = start + c
                for j in 0..<latent { result.z[cell * latent + j] = z.value.data[best * latent + j] }
                result.reconstructions.withUnsafeMutableBufferPointer {
                    ($0.baseAddress! + cell * per).update(from: recon.data + best * per, count: per)
                }
                result.pixelError[cell] = Float(pixel[best])
                result.featureError[cell] = Float(feature[best])
            }
            start += cells
        }
        return result
    }

    /// One evaluation of L at z for every row: per-row losses, and (when `gradient`) dL/dz in z.grad.
    private func evaluate(z: Parameter, rows: Int, per: Int, width: Int, losses: inout [Double], gradient: Bool,
                          pixel: UnsafeMutablePointer<[Double]>?, feature: UnsafeMutablePointer<[Double]>?) throws {
        let g = model.outputGenerator, d = model.discriminator
        let latent = z.value.shape[1]
        let fake = try g.forward(z.value)
        gradImage.resize(fake.shape)
        let fp = fake.data, tp = target.data, gi = gradImage.data
        let kPix = 2 / Float(per)
        for r in 0..<rows {
            var s = 0.0
            for j in 0..<per {
                let e = fp[r * per + j] - tp[r * per + j]
                s += Double(e) * Double(e)
                gi[r * per + j] = kPix * e
            }
            losses[r] = s / Double(per)
            pixel?.pointee[r] = s / Double(per)
        }
        let w = options.featureWeight
        if w > 0 || feature != nil {
            let feats = try d.forward(fake, through: DCGANArchitecture.representationLayer)
            gradFeature.resize(feats.shape)
            let fq = feats.data, gf = gradFeature.data
            for r in 0..<rows {
                var s = 0.0
                let scale = featureScale[r]
                for k in 0..<width {
                    let e = fq[r * width + k] - targetFeatures[r * width + k]
                    s += Double(e) * Double(e)
                    gf[r * width + k] = w * 2 * e / (Float(width) * scale)
                }
                let rel = s / Double(width) / Double(scale)
                losses[r] += Double(w) * rel
                feature?.pointee[r] = rel
            }
            if gradient && w > 0 {
                let dx = try d.backward(gradFeature, inputGradient: true, parameterGradients: false)!
                let dp = dx.data
                for i in 0..<(rows * per) { gi[i] += dp[i] }
            }
        }
        let root = Float(latent).squareRoot()
        let zp = z.value.data
        var shell = [Float](repeating: 0, count: rows)
        for r in 0..<rows {
            var n2: Float = 0
            for j in 0..<latent { n2 += zp[r * latent + j] * zp[r * latent + j] }
            let norm = max(n2.squareRoot(), 1e-12), dev = norm / root - 1
            losses[r] += Double(options.priorWeight * dev * dev)
            shell[r] = 2 * options.priorWeight * dev / (norm * root)
        }
        guard gradient else { return }
        // G's buffers still hold this forward (the discriminator has its own).
        let dz = try g.backward(gradImage, inputGradient: true, parameterGradients: false)!
        let gz = z.grad.data, dzp = dz.data
        for r in 0..<rows {
            for j in 0..<latent { gz[r * latent + j] = dzp[r * latent + j] + shell[r] * zp[r * latent + j] }
        }
    }
}
