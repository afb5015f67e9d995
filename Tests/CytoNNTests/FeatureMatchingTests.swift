import CytoCore
import Testing
@testable import CytoNN

@Suite("Feature matching")
struct FeatureMatchingTests {
    func network() throws -> Network { try smoothBlockNetwork(seed: 11) }

    /// The mean over `rows` of each channel's spatial mean of the named layers' outputs, walked
    /// plane by plane in Double (the definition, not the term's code).
    func meanPooled(_ net: Network, layers: [String], rows: Range<Int>) -> [Double] {
        var out: [Double] = []
        for name in layers {
            let t = net.output(of: name)!
            let c = t.shape[1], hw = t.shape[2] * t.shape[3]
            for k in 0..<c {
                var s = 0.0
                for r in rows { for p in 0..<hw { s += Double(t.data[(r * c + k) * hw + p]) } }
                out.append(s / Double(rows.count * hw))
            }
        }
        return out
    }

    @Test("value: weight x squared distance of the mean pooled features; input gradient through backward(adding:) matches central differences")
    func valueAndGradient() throws {
        Engine.setThreads(1)
        let net = try network()
        let layers = ["act0", "act1"]
        let weight: Float = 2.5
        let term = try FeatureMatching(term: FeatureMatchingTerm(weight: weight), network: net, layerNames: layers)
        let real = randomTensor(Shape(4, 2, 6, 6), seed: 12)
        _ = try net.forward(real)
        try term.recordReal(first: 1, count: 3)  // row 0 is not part of the real rows
        let realMean = meanPooled(net, layers: layers, rows: 1..<4)
        #expect(maxAbsDiff(term.realMean.values, realMean.map(Float.init)) < 1e-6)

        // Rows 1..<4 are the generated ones; rows 0 and 4 must get nothing from the term.
        let fake = randomTensor(Shape(5, 2, 6, 6), seed: 13, scale: 1.5)
        func reference() throws -> Double {
            _ = try net.forward(fake)
            let m = meanPooled(net, layers: layers, rows: 1..<4)
            return Double(weight) * zip(m, realMean).reduce(0) { $0 + ($1.0 - $1.1) * ($1.0 - $1.1) }
        }
        let expected = try reference()
        let loss = try term.evaluate(first: 1, count: 3)
        #expect(expected > 1e-3, "term \(expected) too small to test")
        #expect(abs(Double(loss) - expected) < 1e-5 * max(1, expected), "\(loss) vs \(expected)")
        let top = Tensor(Shape(5, 1), repeating: 0)
        let gx = try net.backward(top, inputGradient: true, parameterGradients: false, adding: term.additions)!.clone()
        let per = fake.shape.itemCount
        #expect(gx.values[0..<per].allSatisfy { $0 == 0 } && gx.values[(4 * per)...].allSatisfy { $0 == 0 })
        try checkGradient("d term / d input", value: fake, analytic: gx.values, h: 1e-3, rtol: 2e-2, atol: 1e-5, probes: 60) { try reference() }
    }

    @Test("evaluating before any real features were recorded, or on no rows, is an error")
    func misuse() throws {
        let net = try network()
        let term = try FeatureMatching(term: FeatureMatchingTerm(weight: 1), network: net, layerNames: ["act0"])
        _ = try net.forward(randomTensor(Shape(2, 2, 6, 6), seed: 14))
        #expect(throws: CytoError.self) { _ = try term.evaluate(first: 0, count: 2) }
        #expect(throws: CytoError.self) { try term.recordReal(first: 0, count: 0) }
        #expect(throws: CytoError.self) { try term.recordReal(first: 1, count: 2) }  // rows past the batch
        #expect(throws: CytoError.self) { _ = try FeatureMatching(term: FeatureMatchingTerm(weight: 1), network: net, layerNames: ["nope"]) }
    }
}
