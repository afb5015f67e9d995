import CytoNN
import Foundation

/// A generator loss term that matches the generated batch's finest texture to the real batch's:
/// per channel, weight * (ln E_fake - ln E_real)^2, where E is the energy of the 5-point
/// Laplacian (LaplacianEnergy), summed over channels. A short training otherwise leaves cells
/// without the granules of their nuclei and the fibres of their cytoplasm.
public final class TextureMatching {
    public let weight: Float
    private let energy = LaplacianEnergy()
    /// Real then generated energies per channel, and the term's gradient per generated energy.
    private var energies: [Double] = [], sumGradient: [Double] = []

    public init(weight: Float) { self.weight = weight }

    /// Adds the term's gradient with respect to `fake` into `gradient`, and returns the term.
    /// Data-parallel: the energies are summed over `collective` first, so every process matches
    /// the global batch's.
    @discardableResult
    public func accumulate(fake fakeBatch: Tensor, real realBatch: Tensor, into gradient: Tensor,
                           collective: (any Collective)? = nil) throws -> Float {
        let c = fakeBatch.shape[1]
        if energies.count != 2 * c {
            energies = [Double](repeating: 0, count: 2 * c)
            sumGradient = [Double](repeating: 0, count: c)
        }
        energy.forward(realBatch, into: &energies)
        energy.forward(fakeBatch, into: &energies, offset: c)
        if let collective { try energies.withUnsafeMutableBufferPointer { try collective.allreduceSum($0.baseAddress!, count: $0.count) } }
        var loss = 0.0
        for ch in 0..<c {
            let er = max(energies[ch], 1e-30), ef = max(energies[c + ch], 1e-30)
            let d = log(ef) - log(er)
            loss += Double(weight) * d * d
            sumGradient[ch] = 2 * Double(weight) * d / ef
        }
        energy.backward(fakeBatch, sumGradient: sumGradient, into: gradient)
        return Float(loss)
    }
}
