import CytoCore

/// The three GAN objectives of CytoGAN.
public enum GANLoss: String, Sendable, CaseIterable {
    /// Binary cross-entropy on the discriminator's logit; non-saturating generator.
    case dcgan
    /// Least squares: mean squared error to the targets; generator towards 1.
    case lsgan
    /// Wasserstein critic with gradient penalty; generator maximises the critic's score.
    case wgangp
}

/// The R1 penalty (Mescheder et al. 2018): gamma / 2 * mean ||grad_x D(x)||^2 over the real
/// items D sees, pulling its gradient on real data to zero. Applied lazily (StyleGAN2): on every
/// `interval`-th discriminator update only, with gamma multiplied by `interval`.
public struct R1Penalty: Sendable, Equatable {
    public var gamma: Float
    public var interval: Int
    /// The interval when none is given (StyleGAN2's).
    public static let defaultInterval = 16
    public init(gamma: Float, interval: Int = defaultInterval) {
        self.gamma = gamma
        self.interval = interval
    }
}

/// One CytoGAN training step, allocation-free once its buffers are sized:
/// 1. z ~ N(0, I); fake = G(z).
/// 2. D on the batch [fake; real] with targets [0; U(0.8, 1)] (one-sided label smoothing;
///    WGAN-GP: labels fake 0 / real 1, plus the gradient penalty at x = e real + (1 - e) fake with
///    e ~ U(0, 1) per item); D's optimizer steps.
/// 3. D on fake again; G's loss (towards 1, or -mean D for WGAN-GP) back-propagated through D
///    (input gradient only) into G; G's optimizer steps.
/// With a differentiable augmentation (`diffAugment`), every batch D sees in steps 2 and 3 goes
/// through fresh random transforms first, and G's gradient comes back through them.
/// With an R1 penalty, on its steps D's gradient gains that of the penalty at the real half of
/// the (augmented) batch of step 2.
/// With a contrastive term, the batch of step 2 is [fake; real; real'], real' being each real
/// crop under a random symmetry of the square (and, with augmentation, its own translation and
/// cutout): the GAN loss reads the first two thirds, the term (`PooledContrast`) the real pairs,
/// and one backward pass takes both.
/// With feature matching, step 2 keeps the mean pooled block features of the real half, and
/// G's loss in step 3 gains the term's distance to them (`FeatureMatching`), back-propagated in
/// the same pass as the adversarial loss.
/// With a weight average (`discriminatorAverage`), the discriminator's weights are folded into it
/// after each of its updates.
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
    /// The R1 penalty and its evaluator (nil: none, the paper).
    public let r1: R1Penalty?
    private let r1Evaluator: GradientPenalty?
    public var latentRNG: RandomStream
    public var labelRNG: RandomStream
    public var mixRNG: RandomStream
    /// Differentiable augmentation of D's inputs (nil: none, the paper); its stream is checkpointed.
    public let diffAugment: DiffAugment?
    /// Moving average of the discriminator's weights, updated after each of its updates (nil: none).
    public let discriminatorAverage: WeightAverage?
    /// Moving average of the generator's weights, updated after each of its updates (nil: none).
    public let generatorAverage: WeightAverage?
    /// The contrastive term on D's pooled blocks (nil: none, the paper).
    public let contrastive: PooledContrast?
    /// Feature matching in the generator's loss (nil: none, the paper).
    public let featureMatching: FeatureMatching?
    /// Draws the symmetry of each real crop's second view (used only with a contrastive term).
    public var viewRNG: RandomStream

    private let z = Tensor(Shape(0))
    private let both = Tensor(Shape(0))
    private let targets = Tensor(Shape(0))
    private let gradient = Tensor(Shape(0))
    private let mixed = Tensor(Shape(0))
    private let ganScores = Tensor(Shape(0))
    private let allGradient = Tensor(Shape(0))
    private let planeScratch = Tensor(Shape(0))

    /// What one step measured.
    public struct Result: Sendable {
        public var discriminatorLoss: Float
        public var generatorLoss: Float
        /// The gradient penalty (WGAN-GP's, or R1's on its steps, gamma scaled by the interval; 0
        /// otherwise), included in `discriminatorLoss`.
        public var gradientPenalty: Float
        /// The weighted contrastive loss (0 without the term), not included in `discriminatorLoss`.
        public var contrastiveLoss: Float = 0
        /// The weighted feature-matching loss (0 without the term), not included in `generatorLoss`.
        public var featureMatchingLoss: Float = 0
    }

    public init(generator: Network, discriminator: Network, generatorOptimizer: any Optimizer, discriminatorOptimizer: any Optimizer,
                loss: GANLoss, latent: Int, seed: UInt64, penaltyWeight: Float = 10,
                diffAugment policy: DiffAugmentPolicy = .none, r1: R1Penalty? = nil, discriminatorAverage: WeightAverage? = nil,
                generatorAverage: WeightAverage? = nil, contrastive: PooledContrast? = nil, featureMatching: FeatureMatching? = nil) {
        self.generator = generator
        self.discriminator = discriminator
        self.generatorOptimizer = generatorOptimizer
        self.discriminatorOptimizer = discriminatorOptimizer
        self.loss = loss
        self.latent = latent
        penalty = GradientPenalty(weight: penaltyWeight)
        self.r1 = r1
        r1Evaluator = r1.map { GradientPenalty(weight: $0.gamma / 2 * Float($0.interval), centre: 0) }
        latentRNG = RandomStream(seed: seed, purpose: "latent")
        labelRNG = RandomStream(seed: seed, purpose: "label-smoothing")
        mixRNG = RandomStream(seed: seed, purpose: "interpolation")
        diffAugment = policy.isIdentity ? nil : DiffAugment(policy: policy, rng: RandomStream(seed: seed, purpose: "diff-augment"))
        self.discriminatorAverage = discriminatorAverage
        self.generatorAverage = generatorAverage
        self.contrastive = contrastive
        self.featureMatching = featureMatching
        viewRNG = RandomStream(seed: seed, purpose: "contrastive-view")
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
        // Discriminator on [fake; real] (and real', the second views, with a contrastive term).
        let per = real.shape.itemCount
        both.resize(real.shape.withBatch((contrastive == nil ? 2 : 3) * b))
        both.data.update(from: fake.data, count: b * per)
        (both.data + b * per).update(from: real.data, count: b * per)
        if contrastive != nil {
            let second = both.data + 2 * b * per
            second.update(from: real.data, count: b * per)
            if real.shape.rank == 4, real.shape[2] == real.shape[3] {
                let side = real.shape[2]
                planeScratch.resize(Shape(side * side))
                for i in 0..<b {
                    SquareSymmetry(index: viewRNG.below(8)).apply(second + i * per, channels: real.shape[1], size: side, scratch: planeScratch.data)
                }
            }
        }
        targets.resize(Shape(2 * b, 1))
        for i in 0..<b { targets.data[i] = 0 }
        for i in b..<(2 * b) { targets.data[i] = loss == .wgangp ? 1 : labelRNG.uniform(0.8, 1.0) }
        discriminator.zeroGradients()
        let input = try diffAugment?.forward(both) ?? both
        let scores = try discriminator.forward(input)
        if let featureMatching { try featureMatching.recordReal(first: b, count: b) }
        var lossD: Float
        var contrastiveLoss: Float = 0
        if let contrastive {
            ganScores.alias(scores, as: Shape(2 * b, 1))
            lossD = try objective(ganScores)
            allGradient.resize(scores.shape)
            allGradient.data.update(from: gradient.data, count: 2 * b)
            (allGradient.data + 2 * b).update(repeating: 0, count: b)
            contrastiveLoss = try contrastive.evaluate(first: b, pairs: b)
            _ = try discriminator.backward(allGradient, inputGradient: false, parameterGradients: true, adding: contrastive.additions)
        } else {
            lossD = try objective(scores)
            _ = try discriminator.backward(gradient, inputGradient: false, parameterGradients: true)
        }
        var gp: Float = 0
        if let r1, let r1Evaluator, (discriminatorOptimizer.step + 1) % r1.interval == 0 {
            mixed.resize(real.shape)
            mixed.data.update(from: input.data + b * per, count: b * per)
            gp = try r1Evaluator.accumulate(critic: discriminator, at: mixed).penalty
            lossD += gp
        }
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
        discriminatorOptimizer.update()
        discriminatorAverage?.update(afterUpdate: discriminatorOptimizer.step)
        guard updateGenerator else {
            return Result(discriminatorLoss: lossD, generatorLoss: .nan, gradientPenalty: gp, contrastiveLoss: contrastiveLoss)
        }

        // Generator through the discriminator.
        generator.zeroGradients()
        let fakeScores = try discriminator.forward(diffAugment?.forward(fake) ?? fake)
        targets.resize(Shape(b, 1))
        targets.fill(1)
        let lossG = try objective(fakeScores)
        let fmLoss = try featureMatching?.evaluate(first: 0, count: b) ?? 0
        var gx = try discriminator.backward(gradient, inputGradient: true, parameterGradients: false,
                                            adding: featureMatching?.additions ?? [])!
        if let a = diffAugment { gx = try a.backward(gx) }
        _ = try generator.backward(gx, inputGradient: false, parameterGradients: true)
        generatorOptimizer.update()
        generatorAverage?.update(afterUpdate: generatorOptimizer.step)
        return Result(discriminatorLoss: lossD, generatorLoss: lossG, gradientPenalty: gp, contrastiveLoss: contrastiveLoss,
                      featureMatchingLoss: fmLoss)
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
