import CytoNN
import Foundation

/// A generator loss term that matches the generated batch's finest texture to the real batch's:
/// per channel, weight * (sqrt(E_fake / E_real) - 1)^2, where E is the energy of the 5-point
/// Laplacian (LaplacianEnergy), summed over channels. A short training otherwise leaves cells
/// without the granules of their nuclei and the fibres of their cytoplasm. The ratio of
/// amplitudes (not of energies, nor their logs) keeps the gradient bounded when a generated batch
/// is nearly flat: with the log ratio a training run blew up after 2,100 steps.
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
            let rho = (ef / er).squareRoot()
            loss += Double(weight) * (rho - 1) * (rho - 1)
            sumGradient[ch] = Double(weight) * (rho - 1) / (ef * er).squareRoot()
        }
        energy.backward(fakeBatch, sumGradient: sumGradient, into: gradient)
        return Float(loss)
    }
}
