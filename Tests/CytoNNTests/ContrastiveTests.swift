import CytoCore
import Foundation
import Testing
@testable import CytoNN

/// NT-Xent by its definition, in double precision: rows scaled to unit length, similarities over
/// the temperature, for each row minus its pair's similarity plus the log-sum-exp over the others.
private func referenceNTXent(_ h: [Double], rows n: Int, dim d: Int, temperature: Double) -> Double {
    let z = (0..<n).map { i -> [Double] in
        let row = Array(h[(i * d)..<((i + 1) * d)])
        let r = row.reduce(0) { $0 + $1 * $1 }.squareRoot()
        return row.map { $0 / r }
    }
    func s(_ i: Int, _ j: Int) -> Double { zip(z[i], z[j]).reduce(0) { $0 + $1.0 * $1.1 } / temperature }
    var total = 0.0
    for i in 0..<n {
        let pair = (i + n / 2) % n
        total += -s(i, pair) + log((0..<n).filter { $0 != i }.reduce(0) { $0 + exp(s(i, $1)) })
    }
    return total / Double(n)
}

@Suite("Contrastive term")
struct ContrastiveTests {
    @Test("NT-Xent: value equals the definition in double precision, gradient its central differences",
          arguments: [(Float(0.5), UInt64(1)), (Float(0.1), UInt64(2))])
    func ntXentMatchesItsDefinition(temperature: Float, seed: UInt64) throws {
        let n = 6, d = 5
        let x = randomTensor(Shape(n, d), seed: seed)
        let g = Tensor(Shape(0)), scratch = Tensor(Shape(0))
        let loss = try Loss.ntXent(features: x, temperature: temperature, gradient: g, scratch: scratch)
        let h = x.values.map(Double.init)
        let reference = referenceNTXent(h, rows: n, dim: d, temperature: Double(temperature))
        #expect(abs(Double(loss) - reference) < 1e-5 * max(1, abs(reference)), "\(loss) vs \(reference)")
        for i in 0..<(n * d) {
            var plus = h, minus = h
            plus[i] += 1e-6
            minus[i] -= 1e-6
            let numeric = (referenceNTXent(plus, rows: n, dim: d, temperature: Double(temperature))
                - referenceNTXent(minus, rows: n, dim: d, temperature: Double(temperature))) / 2e-6
            #expect(abs(Double(g.data[i]) - numeric) < 1e-4 + 1e-3 * abs(numeric), "d/dh[\(i)]: \(g.data[i]) vs \(numeric)")
        }
        // The loss does not depend on the length of a row: its gradient is orthogonal to the row.
        for i in 0..<n {
            var radial = 0.0
            for k in 0..<d { radial += Double(g.data[i * d + k]) * h[i * d + k] }
            #expect(abs(radial) < 1e-5)
        }
    }

    @Test("NT-Xent: one pair has no other row to compare with, so loss and gradient are 0; bad shapes are refused")
    func ntXentEdgeCases() throws {
        let g = Tensor(Shape(0)), scratch = Tensor(Shape(0))
        let loss = try Loss.ntXent(features: randomTensor(Shape(2, 4), seed: 3), temperature: 0.2, gradient: g, scratch: scratch)
        #expect(abs(loss) < 1e-6 && g.values.allSatisfy { abs($0) < 1e-6 })
        #expect(throws: CytoError.self) { _ = try Loss.ntXent(features: Tensor(Shape(3, 4)), temperature: 0.2, gradient: g, scratch: scratch) }
        #expect(throws: CytoError.self) { _ = try Loss.ntXent(features: Tensor(Shape(4, 4)), temperature: 0, gradient: g, scratch: scratch) }
    }

    /// The pooled blocks' test network; the batch holds an item before the pairs and one after,
    /// which the term must leave alone.
    func network() throws -> Network { try smoothBlockNetwork(seed: 4) }

    @Test("pooled contrast: the parameter gradient from Network.backward(adding:) matches central differences of the term")
    func pooledContrastGradient() throws {
        Engine.setThreads(1)
        let net = try network()
        let x = randomTensor(Shape(6, 2, 6, 6), seed: 5)
        let term = try PooledContrast(term: ContrastiveTerm(weight: 0.7, temperature: 0.3), network: net, layerNames: ["act0", "act1"])
        func loss() throws -> Double {
            _ = try net.forward(x)
            return Double(try term.evaluate(first: 1, pairs: 2))
        }
        let l0 = try loss()
        #expect(l0 > 0.1, "term \(l0) too small to test")
        // Rows 0 and 5 are outside the pairs: nothing is added for them.
        for a in term.additions {
            let per = a.gradient.shape.itemCount
            #expect(a.gradient.values[0..<per].allSatisfy { $0 == 0 } && a.gradient.values[(5 * per)...].allSatisfy { $0 == 0 })
        }
        net.zeroGradients()
        let top = Tensor(Shape(6, 1), repeating: 0)
        _ = try net.backward(top, inputGradient: false, parameterGradients: true, adding: term.additions)
        let analytic = net.parameters.map { $0.grad.values }
        for (p, a) in zip(net.parameters, analytic) where p.name != "output.weight" && p.name != "output.bias" {
            try checkGradient("term d/d \(p.name)", value: p.value, analytic: a, h: 1e-3, rtol: 2e-2, atol: 1e-4, probes: 60) { try loss() }
        }
        // The output layer lies above the pooled blocks: no gradient from the term.
        #expect(analytic[4].allSatisfy { $0 == 0 } && analytic[5].allSatisfy { $0 == 0 })
    }

    @Test("Network.backward(adding:) back-propagates the sum: top gradient and added gradient together equal the two passes apart")
    func additionsAreAdded() throws {
        Engine.setThreads(1)
        let net = try network()
        let x = randomTensor(Shape(3, 2, 6, 6), seed: 8)
        let out = try net.forward(x)
        let top = randomTensor(out.shape, seed: 9)
        let inner = randomTensor(net.output(of: "act1")!.shape, seed: 10)
        func grads(_ top: Tensor, _ extra: [(layer: Int, gradient: Tensor)]) throws -> [[Float]] {
            _ = try net.forward(x)
            net.zeroGradients()
            _ = try net.backward(top.clone(), inputGradient: false, parameterGradients: true, adding: extra)
            return net.parameters.map { $0.grad.values }
        }
        let both = try grads(top, [(net.index(of: "act1")!, inner)])
        let onlyTop = try grads(top, [])
        let onlyInner = try grads(Tensor(out.shape, repeating: 0), [(net.index(of: "act1")!, inner)])
        for k in both.indices { #expect(maxAbsDiff(both[k], zip(onlyTop[k], onlyInner[k]).map { $0 + $1 }) < 1e-5) }
        // A gradient whose shape does not match the layer's output is refused.
        _ = try net.forward(x)
        #expect(throws: CytoError.self) {
            _ = try net.backward(top, inputGradient: false, parameterGradients: true, adding: [(1, Tensor(Shape(1, 1)))])
        }
    }
}
