import CytoCore
import CytoNN
import CytoNNTestSupport
import Testing
@testable import CytoGAN

@Suite("Weight average")
struct WeightAverageTests {
    /// Sets every tensor of `net` to the constant `v` (so the expected averages are plain numbers).
    static func fill(_ net: Network, _ v: Float) { for (_, t) in net.namedTensors { t.fill(v) } }

    @Test("a running mean until it spans 1/(1-decay) updates, then an exponential average")
    func averageByHand() throws {
        let arch = NetworkTests.tiny
        let source = try arch.makeDiscriminator(noise: RandomStream(seed: 1, purpose: "noise"))
        let twin = try arch.makeDiscriminator(noise: RandomStream(seed: 2, purpose: "noise"))
        WeightAverageTests.fill(source, 7)
        let avg = try WeightAverage(source: source, average: twin, decay: 0.75)
        #expect(twin.namedTensors.allSatisfy { $0.tensor.values.allSatisfy { $0 == 7 } })  // starts as a copy
        #expect(!twin.training)
        // Weights after updates 1...5: 1, 2, 6, 10, 2. With decay 0.75 (horizon 4) the average is
        // the mean of updates 1...t for t <= 4 (decays 0, 1/2, 2/3, 3/4), then 0.75 avg + 0.25 w.
        let w: [Float] = [1, 2, 6, 10, 2]
        let expected: [Double] = [1, 1.5, 3, 4.75, 0.75 * 4.75 + 0.25 * 2]
        for (t, (v, e)) in zip(w, expected).enumerated() {
            WeightAverageTests.fill(source, v)
            avg.update(afterUpdate: t + 1)
            for (name, tensor) in twin.namedTensors {
                #expect(tensor.values.allSatisfy { abs(Double($0) - e) < 1e-6 }, "\(name) after update \(t + 1): \(tensor.values.prefix(3)) vs \(e)")
            }
        }
        #expect(avg.decay(atUpdate: 1) == 0 && avg.decay(atUpdate: 100) == 0.75)
        #expect(throws: CytoError.self) { try WeightAverage(source: source, average: twin, decay: 1) }
        let other = try DCGANArchitecture.small64.makeDiscriminator(noise: RandomStream(seed: 1, purpose: "noise"))
        #expect(throws: CytoError.self) { try WeightAverage(source: source, average: other, decay: 0.9) }
    }

    @Test("with a ramp-up the horizon grows as that fraction of the updates so far")
    func rampedAverageByHand() throws {
        let arch = NetworkTests.tiny
        let source = try arch.makeDiscriminator(noise: RandomStream(seed: 1, purpose: "noise"))
        let twin = try arch.makeDiscriminator(noise: RandomStream(seed: 2, purpose: "noise"))
        let avg = try WeightAverage(source: source, average: twin, decay: 0.9, rampup: 0.5)
        // Horizon 0.5 t: decay 0 for t <= 2 (the average is the latest weights), then 1 - 2/t
        // (t = 3: 1/3, t = 4: 1/2), capped at 0.9 from t = 20 on.
        #expect(avg.decay(atUpdate: 1) == 0 && avg.decay(atUpdate: 2) == 0)
        #expect(abs(avg.decay(atUpdate: 3) - 1.0 / 3) < 1e-6 && avg.decay(atUpdate: 4) == 0.5)
        #expect(avg.decay(atUpdate: 19) < 0.9 && avg.decay(atUpdate: 20) == 0.9 && avg.decay(atUpdate: 500) == 0.9)
        let w: [Float] = [4, 8, 2, 6]
        let expected: [Double] = [4, 8, 1.0 / 3 * 8 + 2.0 / 3 * 2, 0.5 * (1.0 / 3 * 8 + 2.0 / 3 * 2) + 0.5 * 6]
        for (t, (v, e)) in zip(w, expected).enumerated() {
            WeightAverageTests.fill(source, v)
            avg.update(afterUpdate: t + 1)
            for (name, tensor) in twin.namedTensors {
                #expect(tensor.values.allSatisfy { abs(Double($0) - e) < 1e-5 }, "\(name) after update \(t + 1): \(tensor.values.prefix(3)) vs \(e)")
            }
        }
        #expect(throws: CytoError.self) { try WeightAverage(source: source, average: twin, decay: 0.9, rampup: 0) }
        #expect(throws: CytoError.self) { try WeightAverage(source: source, average: twin, decay: 0.9, rampup: 1.5) }
    }
}
