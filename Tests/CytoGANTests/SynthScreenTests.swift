import Testing
import CytoCore
@testable import CytoGAN

/// The synthetic screen is seeded, laid out for batch-aware scoring, and its phenotypes show up in
/// plain pixel measurements computed here (not by the generator).
@Suite struct SynthScreenTests {
    let screen = try! SynthScreen()

    func cells(moa: String, concentration: Double? = nil, limit: Int = 48) -> [SynthCellInfo] {
        Array(screen.cells.filter {
            $0.well.treatment.moa == moa && (concentration == nil || $0.well.treatment.concentration == concentration)
        }.prefix(limit))
    }

    /// Mean over cells of a measurement on one channel's pixels.
    func mean(_ cs: [SynthCellInfo], channel: Int, _ f: ([Double]) -> Double) -> Double {
        let plane = screen.config.size * screen.config.size
        return cs.map { c in
            let px = screen.render(c)[(channel * plane)..<((channel + 1) * plane)].map(Double.init)
            return f(px)
        }.reduce(0, +) / Double(cs.count)
    }

    /// Pixels brighter than the background by a fixed margin: an object's area.
    func area(_ px: [Double]) -> Double { Double(px.filter { $0 > 1200 }.count) }
    func total(_ px: [Double]) -> Double { px.reduce(0, +) }
    /// Share of the channel's signal in its brightest 2% of pixels: spots and bundles raise it.
    func topShare(_ px: [Double]) -> Double {
        let s = px.map { max(0, $0 - 180) }.sorted(by: >)
        return s.prefix(px.count / 50).reduce(0, +) / max(1, s.reduce(0, +))
    }

    @Test func rendersDeterministically() throws {
        let c = screen.cells[123]
        #expect(screen.render(c) == screen.render(c))
        var other = SynthConfig(); other.seed = 2
        #expect(try SynthScreen(config: other).render(c) != screen.render(c))
    }

    @Test func layoutSupportsBatchAwareScoring() {
        var batchesOfCompound: [String: Set<String>] = [:]
        var platesWithControls = Set<String>()
        for w in screen.wells {
            if w.treatment.compound == SynthScreen.controlName { platesWithControls.insert(w.plate) }
            else { batchesOfCompound[w.treatment.compound, default: []].insert(w.batch) }
        }
        #expect(platesWithControls.count == screen.config.batches * screen.config.platesPerBatch)
        #expect(batchesOfCompound.values.allSatisfy { $0.count == 1 })
        let c = screen.config
        #expect(screen.treatments.count == c.moaCount * c.compoundsPerMOA * c.concentrations.count)
        // Compounds of one MOA sit in different batches, so each has a partner outside its batch.
        for (moa, _) in SynthScreen.allMOAs.prefix(c.moaCount) {
            let batches = Set(screen.wells.filter { $0.treatment.moa == moa }.map(\.batch))
            #expect(batches.count == min(c.compoundsPerMOA, c.batches), "\(moa)")
        }
        #expect(screen.cells.count == screen.wells.count * c.cellsPerWell)
        #expect(screen.manifestRow(screen.cells[0]).count == SynthScreen.manifestColumns.count)
    }

    @Test func dnaDamageEnlargesNucleiWithDose() {
        // Every compound of the mechanism (some are weak at 0.3 uM), against as many DMSO cells.
        let control = mean(cells(moa: "", limit: 144), channel: 0, area)
        let low = mean(cells(moa: "DNA damage", concentration: 0.3, limit: 144), channel: 0, area)
        let high = mean(cells(moa: "DNA damage", concentration: 3.0, limit: 144), channel: 0, area)
        #expect(high > control * 1.2, "nucleus area DMSO \(control), 3 uM \(high)")
        #expect(high > low, "nucleus area 0.3 uM \(low), 3 uM \(high)")
    }

    @Test func actinDisruptorsMakePuncta() {
        let control = mean(cells(moa: ""), channel: 2, topShare)
        let treated = mean(cells(moa: "Actin disruptors", concentration: 3.0), channel: 2, topShare)
        #expect(treated > control * 1.15, "actin top-2% share DMSO \(control), treated \(treated)")
    }

    @Test func proteinSynthesisInhibitorsLowerTubulin() {
        let control = mean(cells(moa: ""), channel: 1, total)
        let treated = mean(cells(moa: "Protein synthesis", concentration: 3.0), channel: 1, total)
        #expect(treated < control * 0.85, "tubulin total DMSO \(control), treated \(treated)")
    }

    @Test func refusesBadConfigurations() {
        var c = SynthConfig(); c.size = 8
        #expect(throws: CytoError.self) { try SynthScreen(config: c) }
        c = SynthConfig(); c.concentrations = [-1]
        #expect(throws: CytoError.self) { try SynthScreen(config: c) }
    }
}
