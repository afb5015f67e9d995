import CytoCore
import CytoNN
import CytoNNTestSupport
import Testing

/// Data parallelism in the engine: N ranks (threads with an in-memory collective) holding B/N
/// items each, with synchronized BatchNorm, the loss gradient scaled to the global batch and the
/// gradients summed by a GradientReducer, against one process with the whole batch of B.
@Suite(.serialized) struct CollectiveTests {
    /// Conv -> BatchNorm (NCHW) -> LeakyReLU -> Dense -> BatchNorm ([N, F]) -> Dense, seeded.
    static func network() throws -> Network {
        let net = try Network([
            Conv2D(name: "conv", inChannels: 3, outChannels: 4, kernel: 3),
            BatchNorm(name: "bn0", features: 4), LeakyReLU(name: "act0"), Flatten(name: "flat"),
            Dense(name: "dense", inputs: 4 * 6 * 6, outputs: 5), BatchNorm(name: "bn1", features: 5),
            LeakyReLU(name: "act1"), Dense(name: "out", inputs: 5, outputs: 1),
        ])
        var rng = RandomStream(seed: 7, purpose: "init")
        net.initialize(.normal(std: 0.3), rng: &rng)
        return net
    }

    /// What two forward/backward passes leave: outputs and input gradients of the last pass,
    /// the summed parameter gradients, the running statistics, and the two losses.
    struct Outcome {
        var output: [Float], inputGradient: [Float], gradients: [String: [Float]], state: [String: [Float]], losses: [Float]
    }

    /// Two passes over `x` (rows `rows`) of a network whose BatchNorms use `collective`.
    static func passes(_ x: Tensor, _ t: Tensor, rows: Range<Int>, global: Int, collective: (any Collective)?) throws -> Outcome {
        let net = try network()
        for l in net.layers { (l as? BatchNorm)?.collective = collective }
        let per = x.shape.itemCount
        let xs = Tensor(x.shape.withBatch(rows.count)), ts = Tensor(Shape(rows.count, 1))
        xs.data.update(from: x.data + rows.lowerBound * per, count: rows.count * per)
        ts.data.update(from: t.data + rows.lowerBound, count: rows.count)
        let gradient = Tensor(Shape(0))
        let reducer = collective.map { GradientReducer(parameters: net.parameters, collective: $0, extras: 1) }
        var losses: [Float] = [], out: [Float] = [], gx: [Float] = []
        for pass in 0..<2 {
            net.zeroGradients()
            if pass == 1 { for i in 0..<xs.count { xs.data[i] *= 0.5 } }
            let y = try net.forward(xs)
            var loss = try Loss.meanSquaredError(y, targets: ts, gradient: gradient)
            // The local mean's share of the global mean, and its gradient's.
            let k = Float(rows.count) / Float(global)
            loss *= k
            for i in 0..<gradient.count { gradient.data[i] *= k }
            gx = try net.backward(gradient).values
            out = y.values
            if let reducer { reducer[extra: 0] = loss; try reducer.reduce(); loss = reducer[extra: 0] }
            losses.append(loss)
        }
        return Outcome(output: out, inputGradient: gx,
                       gradients: Dictionary(uniqueKeysWithValues: net.parameters.map { ($0.name, $0.grad.values) }),
                       state: Dictionary(uniqueKeysWithValues: net.stateTensors.map { ($0.name, $0.tensor.values) }), losses: losses)
    }

    @Test(arguments: [2, 4])
    func syncBatchNormAndSummedGradientsMatchOneProcess(ranks: Int) throws {
        Engine.setThreads(1)
        let batch = 8
        let x = randomTensor(Shape(batch, 3, 6, 6), seed: 11)
        let t = randomTensor(Shape(batch, 1), seed: 12)
        let whole = try Self.passes(x, t, rows: 0..<batch, global: batch, collective: nil)
        let group = ThreadGroup(size: ranks)
        let local = batch / ranks
        let parts = try group.run { r in
            try Self.passes(x, t, rows: (r * local)..<((r + 1) * local), global: batch, collective: group.member(r))
        }
        let bar = 1e-5
        #expect(relativeDifference(whole.output, parts.flatMap(\.output)) <= bar)
        #expect(relativeDifference(whole.inputGradient, parts.flatMap(\.inputGradient)) <= bar)
        for p in parts {
            #expect(relativeDifference(whole.losses, p.losses) <= bar)
            // Gradients are compared on the network's gradient scale: the biases feeding a
            // training-mode BatchNorm have a gradient that is zero but for rounding, whose
            // per-tensor relative difference means nothing.
            let scale = whole.gradients.values.map { $0.map { Double(abs($0)) }.max()! }.max()!
            for (name, g) in whole.gradients {
                let d = zip(g, p.gradients[name]!).map { abs(Double($0) - Double($1)) }.max()! / scale
                #expect(d <= bar, "gradient of \(name): difference \(d) of the largest gradient")
            }
            for name in ["conv.bias", "dense.bias"] {
                #expect(whole.gradients[name]!.allSatisfy { Double(abs($0)) <= 1e-5 * scale }, "\(name) feeds a BatchNorm")
            }
            for (name, s) in whole.state {
                let d = relativeDifference(s, p.state[name]!)
                #expect(d <= bar, "\(name): relative difference \(d)")
            }
        }
        // Without synchronization the ranks' statistics would differ from the whole batch's.
        let unsynced = try Self.passes(x, t, rows: 0..<local, global: batch, collective: nil)
        #expect(relativeDifference(whole.state["bn0.running_mean"]!, unsynced.state["bn0.running_mean"]!) > 1e-3)
    }

    @Test func batchSliceMapsLocalItemsToGlobalOnes() throws {
        let s = try BatchSlice(rank: 1, ranks: 4, global: 8)
        #expect(s.local == 2 && s.offset == 2)
        // [fake; real] of 2 local items each: fakes 2, 3 and reals 8 + 2, 8 + 3 of the global batch.
        #expect((0..<4).map(s.globalIndex) == [2, 3, 10, 11])
        #expect(throws: CytoError.self) { try BatchSlice(rank: 0, ranks: 3, global: 8) }
    }

    @Test func gradientReducerSumsEveryParameterAndTheExtras() throws {
        let group = ThreadGroup(size: 3)
        let sums = try group.run { r -> ([Float], Float) in
            let a = Parameter(name: "a", shape: Shape(5)), b = Parameter(name: "b", shape: Shape(2, 3))
            for i in 0..<5 { a.grad.data[i] = Float(r * 10 + i) }
            for i in 0..<6 { b.grad.data[i] = Float(r) - Float(i) }
            let reducer = GradientReducer(parameters: [a, b], collective: group.member(r), extras: 1)
            reducer[extra: 0] = Float(r + 1)
            try reducer.reduce()
            return (a.grad.values + b.grad.values, reducer[extra: 0])
        }
        let expected = (0..<5).map { Float(30 + 3 * $0) } + (0..<6).map { Float(3) - Float(3 * $0) }
        for (g, e) in sums { #expect(g == expected); #expect(e == 6) }
    }
}
