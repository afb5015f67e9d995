import CellImage
import CytoCore
import CytoNN
import CytoNNTestSupport
import Foundation
import Testing
@testable import CytoGAN

/// Data-parallel GAN training against one process: N ranks (threads with an in-memory collective)
/// each stepping on its slice of the same global batches must draw the same random numbers
/// (latent, labels, noise, augmentation: the streams end in the same state) and reach the same
/// weights as one process with the whole batch, to float rounding.
@Suite(.serialized) struct DataParallelTests {
    static func config() -> GANConfig {
        var c = Fixture.tinyConfig(batch: 8)
        c.diffAugment = .translationCutout
        c.diffAugment.brightness = 0.25
        c.diffAugment.contrast = 0.25
        c.discriminatorAverage = 0.9
        return c
    }

    /// Rank `rank`'s `local` items of a global batch.
    static func rows(of batch: Tensor, rank: Int, local: Int) -> Tensor {
        let part = Tensor(batch.shape.withBatch(local))
        let per = batch.shape.itemCount
        part.data.update(from: batch.data + rank * local * per, count: local * per)
        return part
    }

    /// Relative Frobenius difference of two networks' tensors (all of them together).
    static func difference(_ a: Network, _ b: [String: [Float]]) -> Double {
        var num = 0.0, den = 0.0
        for (name, t) in a.namedTensors {
            for (x, y) in zip(t.values, b[name]!) { num += Double(x - y) * Double(x - y); den += Double(x) * Double(x) }
        }
        return (num / den).squareRoot()
    }

    @Test(arguments: [2, 4])
    func stepsMatchOneProcess(ranks: Int) throws {
        Engine.setThreads(1)
        let c = Self.config()
        let steps = 2
        let reals = (0..<steps).map { randomTensor(Shape(8, 3, 16, 16), seed: UInt64(20 + $0), scale: 0.5) }
        let single = try GANModel(config: c)
        var singleLosses: [Float] = []
        for r in reals { let s = try single.trainingStep.step(real: r); singleLosses += [s.discriminatorLoss, s.generatorLoss] }

        typealias Snapshot = (g: [String: [Float]], d: [String: [Float]], avg: [String: [Float]], losses: [Float], streams: [String: RandomStream])
        let group = ThreadGroup(size: ranks)
        let local = 8 / ranks
        let results = try group.run { rank -> Snapshot in
            let m = try GANModel(config: c)
            try m.trainingStep.distribute(over: group.member(rank), globalBatch: 8)
            var losses: [Float] = []
            for r in reals {
                let s = try m.trainingStep.step(real: Self.rows(of: r, rank: rank, local: local))
                losses += [s.discriminatorLoss, s.generatorLoss]
            }
            func named(_ n: Network) -> [String: [Float]] { Dictionary(uniqueKeysWithValues: n.namedTensors.map { ($0.name, $0.tensor.values) }) }
            return (named(m.generator), named(m.discriminator), named(m.discriminatorAverage!.average), losses, m.randomStreams)
        }
        for (rank, r) in results.enumerated() {
            #expect(r.streams == single.randomStreams, "rank \(rank): the random streams moved differently from one process's")
            #expect(relativeDifference(singleLosses, r.losses) <= 1e-5, "rank \(rank): losses \(r.losses) vs \(singleLosses)")
            for (what, net, mine) in [("generator", single.generator, r.g), ("discriminator", single.discriminator, r.d),
                                      ("discriminator average", single.discriminatorAverage!.average, r.avg)] {
                let d = Self.difference(net, mine)
                #expect(d <= 1e-5, "rank \(rank): \(what) differs by \(d) (relative Frobenius)")
            }
        }
    }

    /// With texture matching (or bright-tail matching, whose ranks are taken over the global
    /// batch) the generator's first gradients are large (a fresh generator draws
    /// almost no texture), and Adam's first update is about the learning rate times the sign of
    /// each gradient, so the rounding noise in gradients that are 0 in exact arithmetic (a
    /// convolution's bias before BatchNorm) moves weights by a whole step. So this compares the
    /// gradients of one step instead: every generator gradient of each rank equals one process's
    /// to 1e-5 of the network's largest.
    @Test(arguments: [(2, false), (4, false), (2, true), (4, true)])
    func matchingTermGradientsMatchOneProcess(ranks: Int, tail: Bool) throws {
        Engine.setThreads(1)
        var c = Self.config()
        if tail { c.tailMatching = 1 } else { c.textureMatching = 1 }
        let real = randomTensor(Shape(8, 3, 16, 16), seed: 20, scale: 0.5)
        let single = try GANModel(config: c)
        let one = try single.trainingStep.step(real: real)
        let expected = single.generator.parameters.map { $0.grad.values }
        let largest = expected.joined().reduce(Float(0)) { max($0, abs($1)) }
        #expect(largest > 0)
        let group = ThreadGroup(size: ranks)
        let local = 8 / ranks
        let results = try group.run { rank -> ([[Float]], Float) in
            let m = try GANModel(config: c)
            try m.trainingStep.distribute(over: group.member(rank), globalBatch: 8)
            let s = try m.trainingStep.step(real: Self.rows(of: real, rank: rank, local: local))
            return (m.generator.parameters.map { $0.grad.values }, s.generatorLoss)
        }
        for (rank, (gradients, loss)) in results.enumerated() {
            #expect(abs(loss - one.generatorLoss) <= 1e-5 * abs(one.generatorLoss), "rank \(rank): generator loss \(loss) vs \(one.generatorLoss)")
            for (p, (mine, theirs)) in zip(single.generator.parameters, zip(gradients, expected)) {
                let d = zip(mine, theirs).reduce(Float(0)) { max($0, abs($1.0 - $1.1)) }
                #expect(d <= 1e-5 * largest, "rank \(rank): \(p.name)'s gradient differs by \(d) (largest gradient \(largest))")
            }
        }
    }

    @Test func slicedLoadersReadTheSingleLoadersBatches() throws {
        let dir = try Fixture.tempDir("slices")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let manifest = try StreamingManifest(path: try Fixture.writeManifest(in: dir, paths: try Fixture.writeCrops(in: dir, count: 10)))
        let c = Self.config()
        let cursor = DataCursor(seed: 3)
        func loader(_ slice: BatchSlice?) throws -> BatchLoader {
            try BatchLoader(source: manifest, preprocessing: c.preprocessing, augmentation: .dihedral, batchSize: 4,
                            cursor: cursor, slice: slice)
        }
        let whole = try loader(nil)
        let parts = try (0..<2).map { try loader(try BatchSlice(rank: $0, ranks: 2, global: 4)) }
        defer { whole.stop(); for p in parts { p.stop() } }
        // Six batches of 4 from 10 crops cross two epoch boundaries.
        for _ in 0..<6 {
            let w = try whole.next()
            var joined: [Float] = []
            for p in parts {
                let b = try p.next()
                #expect(b.cursorAfter == w.cursorAfter)
                joined += b.tensor.values
                p.recycle(b)
            }
            #expect(joined == w.tensor.values)
            whole.recycle(w)
        }
    }

    @Test func anUnreadableCropInASliceIsReplacedWithoutMovingTheCursor() throws {
        let dir = try Fixture.tempDir("slices-bad")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let paths = try Fixture.writeCrops(in: dir, count: 7)
        let manifest = try StreamingManifest(path: try Fixture.writeManifest(in: dir, paths: paths, extraLines: ["crops/missing.tif,P0,X,7"]))
        let c = Self.config()
        let parts = try (0..<2).map {
            try BatchLoader(source: manifest, preprocessing: c.preprocessing, augmentation: .dihedral, batchSize: 4,
                            cursor: DataCursor(seed: 3), slice: try BatchSlice(rank: $0, ranks: 2, global: 4))
        }
        defer { for p in parts { p.stop() } }
        // Four batches of 4 over 8 rows: every row, the missing one among them, is met twice.
        for k in 1...4 {
            let batches = try parts.map { try $0.next() }
            #expect(batches[0].cursorAfter == batches[1].cursorAfter)
            #expect(batches[0].cursorAfter.epoch * 8 + batches[0].cursorAfter.position == 4 * k)
            for (p, b) in zip(parts, batches) {
                #expect(b.tensor.values.allSatisfy { $0.isFinite })
                p.recycle(b)
            }
        }
        // The missing row fell in one slice in each epoch (the loaders may have read ahead past it again).
        #expect(parts[0].skippedCount + parts[1].skippedCount >= 2)
    }
}
