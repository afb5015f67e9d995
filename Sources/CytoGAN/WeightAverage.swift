import CytoCore
import CytoNN

/// An exponential moving average of a network's weights, kept in a second network of the same
/// layout (Polyak averaging; the "momentum encoder" of MoCo and BYOL). A GAN's discriminator
/// wanders from update to update as the generator moves; its average changes slowly, so the
/// features read from it do not depend on where the last few hundred updates happened to leave
/// the discriminator.
///
/// After update t (counted from 1) every parameter and state tensor (BatchNorm statistics) becomes
/// `average = d * average + (1 - d) * current` with `d = min(decay, 1 - 1/(rampup * t))` (0 while
/// `rampup * t <= 1`): with `rampup` 1 a plain mean of the weights after updates 1...t until it
/// spans 1 / (1 - decay) updates, an exponential average with that horizon after. A smaller
/// `rampup` lets the horizon grow as that fraction of the updates so far (StyleGAN's ramp), so
/// early in a run the average follows the recent weights instead of dragging along the first,
/// unformed ones. The initial weights never weigh in.
public final class WeightAverage {
    /// The averaged network (read features from it; never train it).
    public let average: Network
    /// Decay per update, in (0, 1).
    public let decay: Float
    /// The horizon early in a run, as a fraction of the updates so far, in (0, 1].
    public let rampup: Float
    private let pairs: [(source: Tensor, target: Tensor)]

    /// Averages `source` into `average`, which must have the same tensors (names and shapes); the
    /// average starts as a copy of `source`.
    public init(source: Network, average: Network, decay: Float, rampup: Float = 1) throws {
        guard decay > 0, decay < 1 else { throw CytoError(.invalidInput, "weight average decay must be in (0, 1), got \(decay)") }
        guard rampup > 0, rampup <= 1 else { throw CytoError(.invalidInput, "weight average ramp-up must be in (0, 1], got \(rampup)") }
        let s = source.namedTensors, a = average.namedTensors
        guard s.count == a.count, zip(s, a).allSatisfy({ $0.name == $1.name && $0.tensor.shape == $1.tensor.shape }) else {
            throw CytoError(.shapeMismatch, "weight average: the two networks have different tensors")
        }
        self.average = average
        self.decay = decay
        self.rampup = rampup
        pairs = zip(s, a).map { ($0.tensor, $1.tensor) }
        average.training = false
        copyFromSource()
    }

    /// The decay used at update `t` (1-based).
    public func decay(atUpdate t: Int) -> Float {
        let horizon = rampup * Float(t)
        return horizon <= 1 ? 0 : min(decay, 1 - 1 / horizon)
    }

    /// Sets the average to the source's current weights.
    public func copyFromSource() {
        for (s, a) in pairs { a.copy(from: s) }
    }

    /// Folds the source's current weights into the average after its update `t` (1-based).
    public func update(afterUpdate t: Int) {
        let d = decay(atUpdate: t), e = 1 - d
        for (s, a) in pairs {
            let src = s.data, dst = a.data
            for i in 0..<s.count { dst[i] = d * dst[i] + e * src[i] }
        }
    }
}
