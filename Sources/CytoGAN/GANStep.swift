import CytoCore
import CytoNN

/// The three GAN objectives of CytoGAN.
public enum GANLoss: String, Sendable, CaseIterable {
    /// Binary cross-entropy on the discriminator's logit; non-saturating generator.
    case dcgan
    /// Least squares: mean squared error to the targets; generator towards 1.
    case lsgan
    /// Wasserstein critic with gradient penalty; generator maximises the critic's score.
    case wgangp
}

/// One CytoGAN training step, allocation-free once its buffers are sized:
/// 1. z ~ N(0, I); fake = G(z).
/// 2. D on the batch [fake; real] with targets [0; U(0.8, 1)] (one-sided label smoothing;
///    WGAN-GP: labels fake 0 / real 1, plus the gradient penalty at x = e real + (1 - e) fake with
///    e ~ U(0, 1) per item);
///    D's optimizer steps, and the weight average (`discriminatorAverage`) takes D's new weights.
/// 3. D on fake again; G's loss (towards 1, or -mean D for WGAN-GP) back-propagated through D
///    (input gradient only) into G; G's optimizer steps.
/// With a differentiable augmentation (`diffAugment`), every batch D sees in steps 2 and 3 goes
/// through fresh random transforms first, and G's gradient comes back through them.
/// Each purpose draws from its own stream (latent, label smoothing, interpolation, augmentation),
/// all public so a checkpoint can save and restore them.
public final class GANTrainingStep {
    public let generator: Network
    public let discriminator: Network
    public let generatorOptimizer: any Optimizer
    public let discriminatorOptimizer: any Optimizer
    public let loss: GANLoss
    public let latent: Int
    public var penalty: GradientPenalty
    public var latentRNG: RandomStream
    public var labelRNG: RandomStream
    public var mixRNG: RandomStream
    /// Differentiable augmentation of D's inputs (nil: none, the paper); its stream is checkpointed.
    public let diffAugment: DiffAugment?
    /// Moving average of the discriminator's weights, updated after each of its updates (nil: none).
    public let discriminatorAverage: WeightAverage?
    /// Moving average of the generator's weights, updated after each of its updates (nil: none).
    public let generatorAverage: WeightAverage?

    private let z = Tensor(Shape(0))
    private let both = Tensor(Shape(0))
    private let targets = Tensor(Shape(0))
    private let gradient = Tensor(Shape(0))
    private let mixed = Tensor(Shape(0))

    /// What one step measured.
    public struct Result: Sendable {
        public var discriminatorLoss: Float
        public var generatorLoss: Float
        /// The gradient penalty (WGAN-GP's; 0 otherwise), included in `discriminatorLoss`.
        public var gradientPenalty: Float
    }

    public init(generator: Network, discriminator: Network, generatorOptimizer: any Optimizer, discriminatorOptimizer: any Optimizer,
                loss: GANLoss, latent: Int, seed: UInt64, penaltyWeight: Float = 10,
                diffAugment policy: DiffAugmentPolicy = .none, discriminatorAverage: WeightAverage? = nil,
                generatorAverage: WeightAverage? = nil) {
        self.generator = generator
        self.discriminator = discriminator
        self.generatorOptimizer = generatorOptimizer
        self.discriminatorOptimizer = discriminatorOptimizer
        self.loss = loss
        self.latent = latent
        penalty = GradientPenalty(weight: penaltyWeight)
        latentRNG = RandomStream(seed: seed, purpose: "latent")
        labelRNG = RandomStream(seed: seed, purpose: "label-smoothing")
        mixRNG = RandomStream(seed: seed, purpose: "interpolation")
        diffAugment = policy.isIdentity ? nil : DiffAugment(policy: policy, rng: RandomStream(seed: seed, purpose: "diff-augment"))
        self.discriminatorAverage = discriminatorAverage
        self.generatorAverage = generatorAverage
    }

    /// Fills `z` with a [batch, latent] draw from N(0, I).
    public func sampleLatent(_ z: Tensor, batch: Int) {
        z.resize(Shape(batch, latent))
        latentRNG.fillNormal(z.buffer)
    }

    /// Runs one step on a batch of real images (NCHW, shaped like the generator's output).
    /// With `updateGenerator` false only the discriminator learns (the extra critic steps of
    /// WGAN-GP); the generator's loss is then reported as NaN.
    public func step(real: Tensor, updateGenerator: Bool = true) throws -> Result {
        let b = real.shape.batch
        guard b > 0 else { throw CytoError(.invalidInput, "training step: empty batch") }
        generator.training = true
        discriminator.training = true
        sampleLatent(z, batch: b)
        let fake = try generator.forward(z)
        guard fake.shape == real.shape else {
            throw CytoError(.shapeMismatch, "training step: real batch \(real.shape) does not match the generator's output \(fake.shape)")
        }

        // Discriminator on [fake; real].
        let per = real.shape.itemCount
        both.resize(real.shape.withBatch(2 * b))
        both.data.update(from: fake.data, count: b * per)
        (both.data + b * per).update(from: real.data, count: b * per)
        targets.resize(Shape(2 * b, 1))
        for i in 0..<b { targets.data[i] = 0 }
        for i in b..<(2 * b) { targets.data[i] = loss == .wgangp ? 1 : labelRNG.uniform(0.8, 1.0) }
        discriminator.zeroGradients()
        let input = try diffAugment?.forward(both) ?? both
        let scores = try discriminator.forward(input)
        var lossD = try objective(scores)
        _ = try discriminator.backward(gradient, inputGradient: false, parameterGradients: true)
        var gp: Float = 0
        if loss == .wgangp {
            mixed.resize(real.shape)
            let f = fake.data, r = real.data, m = mixed.data
            for i in 0..<b {
                let e = mixRNG.uniformFloat()
                for j in 0..<per { m[i * per + j] = e * r[i * per + j] + (1 - e) * f[i * per + j] }
            }
            gp = try penalty.accumulate(critic: discriminator, at: mixed).penalty
            lossD += gp
        }

        // Discriminator update, and its weight average.
        discriminatorOptimizer.update()
        discriminatorAverage?.update(afterUpdate: discriminatorOptimizer.step)
        guard updateGenerator else { return Result(discriminatorLoss: lossD, generatorLoss: .nan, gradientPenalty: gp) }

        // Generator through the discriminator.
        generator.zeroGradients()
        let fakeScores = try discriminator.forward(diffAugment?.forward(fake) ?? fake)
        targets.resize(Shape(b, 1))
        targets.fill(1)
        let lossG = try objective(fakeScores)
        var gx = try discriminator.backward(gradient, inputGradient: true, parameterGradients: false)!
        if let a = diffAugment { gx = try a.backward(gx) }
        _ = try generator.backward(gx, inputGradient: false, parameterGradients: true)
        generatorOptimizer.update()
        generatorAverage?.update(afterUpdate: generatorOptimizer.step)
        return Result(discriminatorLoss: lossD, generatorLoss: lossG, gradientPenalty: gp)
    }

    /// The loss of `scores` against `targets`, its gradient left in `gradient`.
    private func objective(_ scores: Tensor) throws -> Float {
        switch loss {
        case .dcgan: return try Loss.binaryCrossEntropy(logits: scores, targets: targets, gradient: gradient)
        case .lsgan: return try Loss.meanSquaredError(scores, targets: targets, gradient: gradient)
        case .wgangp: return try Loss.wasserstein(scores: scores, labels: targets, gradient: gradient)
        }
    }
}
