#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CytoCore

/// The built-in synthetic screen: BBBC021-like three-channel crops (DNA, tubulin, actin) of cells
/// whose morphology depends on their treatment's mechanism of action and dose, laid out on plates in
/// batches with batch- and plate-level intensity effects. It is the default data of the demo and the
/// tests: seeded, fast, and with a known ground truth (each compound's MOA).
public struct SynthConfig: Sendable, Equatable {
    public var seed: UInt64 = 1
    /// Crop side in pixels (crops are square and centred on the cell's nucleus).
    public var size: Int = 64
    /// Mechanisms of action used (taken in order from `SynthScreen.allMOAs`), besides the DMSO control.
    public var moaCount: Int = 7
    public var compoundsPerMOA: Int = 3
    /// Concentrations in uM; every compound is tested at each.
    public var concentrations: [Double] = [0.3, 1.0, 3.0]
    public var batches: Int = 2
    public var platesPerBatch: Int = 3
    public var controlWellsPerPlate: Int = 4
    public var cellsPerWell: Int = 16
    /// Strength of batch effects (per-channel gain spread between batches, as a log-normal sigma).
    public var batchEffect: Double = 0.15

    public init() {}
}

/// How a mechanism moves each morphological parameter at full response (units: see `Phenotype`).
public struct Phenotype: Sendable, Equatable {
    /// log-scale change of nucleus radius
    public var nucleusSize = 0.0
    /// log-scale change of DNA intensity
    public var dnaIntensity = 0.0
    /// chromatin condensation: brighter, sharper, more textured nuclei
    public var condensation = 0.0
    /// tendency to several nuclei (logit shift)
    public var multinucleation = 0.0
    /// log-scale change of cell radius
    public var cellSize = 0.0
    /// roundness: positive makes cells rounder and smoother
    public var rounding = 0.0
    /// log-scale change of tubulin level
    public var tubulinLevel = 0.0
    /// contrast of microtubule fibres: positive bundles, negative diffuses
    public var tubulinFibres = 0.0
    /// log-scale change of cortical actin
    public var actinCortex = 0.0
    /// actin aggregation into bright puncta
    public var actinPuncta = 0.0

    public init() {}

    static let count = 10
    var vector: [Double] {
        [nucleusSize, dnaIntensity, condensation, multinucleation, cellSize, rounding, tubulinLevel,
         tubulinFibres, actinCortex, actinPuncta]
    }
    init(_ v: [Double]) {
        nucleusSize = v[0]; dnaIntensity = v[1]; condensation = v[2]; multinucleation = v[3]; cellSize = v[4]
        rounding = v[5]; tubulinLevel = v[6]; tubulinFibres = v[7]; actinCortex = v[8]; actinPuncta = v[9]
    }
}

/// One treatment of the screen: a compound at a concentration (DMSO has concentration 0).
public struct SynthTreatment: Sendable, Equatable {
    public var compound: String
    public var concentration: Double
    public var moa: String
    /// Fraction of the full effect reached at this dose (Hill curve of the compound's potency).
    public var response: Double
    /// The compound's own direction of effect at full response.
    var effect: [Double]
}

/// One well: where it is and what it holds.
public struct SynthWell: Sendable, Equatable {
    public var plate: String
    public var batch: String
    public var well: String
    public var treatment: SynthTreatment
    /// Per-channel multiplicative intensity of this plate (batch effect times plate effect).
    var gain: [Double]
}

/// One crop's metadata, in the column order of the manifest.
public struct SynthCellInfo: Sendable, Equatable {
    public var well: SynthWell
    public var objectNumber: Int
    /// Path relative to the manifest's folder.
    public var path: String {
        "crops/\(well.plate)/\(well.well)/s1_\(String(repeating: "0", count: max(0, 4 - String(objectNumber).count)))\(objectNumber).tif"
    }
}

public final class SynthScreen: Sendable {
    public static let controlName = "DMSO"
    public static let manifestColumns = ["path", "Metadata_Plate", "Metadata_Well", "Metadata_Site",
                                         "Metadata_ObjectNumber", "Metadata_Compound", "Metadata_Concentration",
                                         "Metadata_MOA", "Metadata_Batch"]

    /// The mechanisms, named as in BBBC021, with their phenotypes at full response.
    public static let allMOAs: [(String, Phenotype)] = {
        func p(_ f: (inout Phenotype) -> Void) -> Phenotype { var x = Phenotype(); f(&x); return x }
        return [
            ("Microtubule destabilizers", p { $0.tubulinFibres = -2.2; $0.rounding = 1.2; $0.cellSize = -0.3; $0.tubulinLevel = -0.3 }),
            ("Microtubule stabilizers", p { $0.tubulinFibres = 2.0; $0.tubulinLevel = 0.5; $0.multinucleation = 2.5; $0.nucleusSize = -0.1 }),
            ("Actin disruptors", p { $0.actinCortex = -1.2; $0.actinPuncta = 2.5; $0.cellSize = -0.15 }),
            ("DNA damage", p { $0.nucleusSize = 0.6; $0.dnaIntensity = 0.35; $0.cellSize = 0.25 }),
            ("Protein synthesis", p { $0.cellSize = -0.4; $0.tubulinLevel = -0.6; $0.actinCortex = -0.5; $0.dnaIntensity = -0.2 }),
            ("Aurora kinase inhibitors", p { $0.nucleusSize = 0.6; $0.multinucleation = 3.0; $0.cellSize = 0.4; $0.dnaIntensity = 0.2 }),
            ("Eg5 inhibitors", p { $0.rounding = 2.0; $0.condensation = 2.5; $0.nucleusSize = -0.2; $0.tubulinFibres = 0.8 }),
            ("DNA replication", p { $0.condensation = 1.2; $0.nucleusSize = -0.25; $0.dnaIntensity = 0.3 }),
        ]
    }()

    public let config: SynthConfig
    public let treatments: [SynthTreatment]
    public let wells: [SynthWell]

    public init(config: SynthConfig = SynthConfig()) throws {
        guard config.size >= 24 && config.size <= 512 else {
            throw CytoError(.invalidInput, "synthetic crop size must be in 24...512", field: "size")
        }
        guard (1...SynthScreen.allMOAs.count).contains(config.moaCount) else {
            throw CytoError(.invalidInput, "moaCount must be in 1...\(SynthScreen.allMOAs.count)", field: "moaCount")
        }
        guard config.compoundsPerMOA >= 1, config.batches >= 1, config.platesPerBatch >= 1,
              config.cellsPerWell >= 1, config.controlWellsPerPlate >= 1, !config.concentrations.isEmpty,
              config.concentrations.allSatisfy({ $0 > 0 && $0.isFinite }) else {
            throw CytoError(.invalidInput, "synthetic screen counts must be positive and concentrations finite and > 0")
        }
        self.config = config
        var rng = RandomStream(seed: config.seed, purpose: "synth/layout")
        let abbreviations = ["MTD", "MTS", "ACT", "DDM", "PSY", "AUR", "EG5", "DRP"]

        // Compounds: each MOA's direction plus a compound-specific twist, a potency and an efficacy.
        var compounds: [(name: String, moa: String, effect: [Double], ec50: Double, batch: Int)] = []
        for m in 0..<config.moaCount {
            let (moa, phen) = SynthScreen.allMOAs[m]
            for c in 0..<config.compoundsPerMOA {
                let efficacy = 0.8 + 0.4 * rng.uniformDouble()
                let effect = phen.vector.map { $0 * efficacy + 0.15 * Double(rng.normal()) }
                let ec50 = exp(log(0.3) + (log(3.0) - log(0.3)) * rng.uniformDouble())
                // Compounds of one MOA go to different batches, so batch-aware scoring finds partners.
                compounds.append(("\(abbreviations[m])-\(c + 1)", moa, effect, ec50, (c + m) % config.batches))
            }
        }
        var ts: [SynthTreatment] = []
        for comp in compounds {
            for conc in config.concentrations {
                let h = 1.5
                let response = pow(conc, h) / (pow(conc, h) + pow(comp.ec50, h))
                ts.append(SynthTreatment(compound: comp.name, concentration: conc, moa: comp.moa,
                                         response: response, effect: comp.effect))
            }
        }
        let control = SynthTreatment(compound: SynthScreen.controlName, concentration: 0, moa: "",
                                     response: 0, effect: Array(repeating: 0, count: Phenotype.count))
        treatments = ts

        // Plates: batch gains shared by a batch's plates, plus a smaller plate gain.
        var ws: [SynthWell] = []
        let rows = Array("BCDEFGHIJKLMNO")
        for b in 0..<config.batches {
            let batchGain = (0..<3).map { _ in exp(config.batchEffect * Double(rng.normal())) }
            for p in 0..<config.platesPerBatch {
                let plate = "SYN\(b + 1)\(Character(UnicodeScalar(UInt8(65 + p))))"
                let gain = batchGain.map { $0 * exp(0.05 * Double(rng.normal())) }
                var contents = Array(repeating: control, count: config.controlWellsPerPlate)
                for (ci, comp) in compounds.enumerated() where comp.batch == b {
                    contents += ts[(ci * config.concentrations.count)..<((ci + 1) * config.concentrations.count)]
                }
                for (i, t) in contents.enumerated() {
                    let name = "\(rows[(i / 10) % rows.count])\(String(format2(i % 10 + 2)))"
                    ws.append(SynthWell(plate: plate, batch: "Batch\(b + 1)", well: name, treatment: t, gain: gain))
                }
            }
        }
        wells = ws
    }

    /// Every crop of the screen, in manifest order.
    public var cells: [SynthCellInfo] {
        wells.flatMap { w in (0..<config.cellsPerWell).map { SynthCellInfo(well: w, objectNumber: $0) } }
    }

    /// The manifest row of a crop (columns as `manifestColumns`).
    public func manifestRow(_ c: SynthCellInfo) -> [String] {
        let t = c.well.treatment
        return [c.path, c.well.plate, c.well.well, "1", String(c.objectNumber), t.compound,
                String(t.concentration), t.moa, c.well.batch]
    }

    /// Renders one crop as UInt16 pixels, channel-major (CHW: DNA, tubulin, actin). Each crop has its
    /// own random stream, so any subset renders identically in any order or on any thread.
    public func render(_ c: SynthCellInfo) -> [UInt16] {
        var out = [UInt16](repeating: 0, count: 3 * config.size * config.size)
        out.withUnsafeMutableBufferPointer { render(c, into: $0) }
        return out
    }

    public func render(_ c: SynthCellInfo, into out: UnsafeMutableBufferPointer<UInt16>) {
        precondition(out.count == 3 * config.size * config.size)
        var rng = RandomStream(seed: config.seed, purpose: "synth/cell/\(c.well.plate)/\(c.well.well)/\(c.objectNumber)")
        let t = c.well.treatment
        // Cells respond unevenly: a per-cell share of the treatment's response, and natural variation.
        let share = t.response * max(0, 0.45 + 0.75 * rng.uniformDouble())
        var v = t.effect.map { $0 * share }
        for i in v.indices { v[i] += 0.3 * Double(rng.normal()) }
        // A few cells are in mitosis even without treatment: round, condensed.
        if rng.uniformDouble() < 0.04 { v[2] += 2.5; v[5] += 2.0; v[0] -= 0.3 }
        let q = Phenotype(v)
        CellPainter(size: config.size, phenotype: q, gain: c.well.gain).paint(into: out, rng: &rng)
    }
}

private func format2(_ n: Int) -> String { n < 10 ? "0\(n)" : "\(n)" }

/// Draws one cell: a nucleus (or several) with chromatin texture, a cytoplasm with microtubule fibres
/// radiating from the nucleus, cortical actin and actin puncta, then camera noise.
struct CellPainter {
    let size: Int
    let phenotype: Phenotype
    let gain: [Double]

    func paint(into out: UnsafeMutableBufferPointer<UInt16>, rng: inout RandomStream) {
        let q = phenotype
        let s = Double(size) / 64.0  // geometry is designed at 64 px and scaled
        let c = Double(size) / 2.0

        // Cell body: an ellipse with a wobbly outline, smoother and rounder when `rounding` is high.
        let roundness = 1.0 / (1.0 + exp(-q.rounding))
        let cellR = 23.0 * s * exp(0.25 * q.cellSize - 0.35 * (roundness - 0.5)) * exp(0.08 * Double(rng.normal()))
        let cellElong = 1.0 + (0.55 * (1 - roundness) + 0.05) * (0.5 + rng.uniformDouble())
        let cellAngle = Double.pi * rng.uniformDouble()
        let wobble = (0..<4).map { _ in (0.10 * (1 - roundness) * Double(rng.normal()), 2 * Double.pi * rng.uniformDouble()) }
        let offset = (6.0 * s * Double(rng.normal()) * 0.3, 6.0 * s * Double(rng.normal()) * 0.3)

        // Nuclei: usually one at the centre; with multinucleation two or three around it.
        let pMulti = 1.0 / (1.0 + exp(-(-3.0 + q.multinucleation)))
        let nNuclei = rng.uniformDouble() < pMulti ? (rng.uniformDouble() < 0.6 ? 2 : 3) : 1
        let condense = 1.0 / (1.0 + exp(-(q.condensation - 1.0)))
        let nucR = 10.5 * s * exp(0.35 * q.nucleusSize - 0.25 * condense) * exp(0.07 * Double(rng.normal()))
            / (nNuclei > 1 ? 1.25 : 1.0)
        var nuclei: [(x: Double, y: Double, r: Double, e: Double, a: Double)] = []
        for k in 0..<nNuclei {
            let a = 2 * Double.pi * (Double(k) / Double(nNuclei)) + rng.uniformDouble()
            let d = nNuclei == 1 ? 0 : nucR * 0.95
            nuclei.append((c + d * cos(a), c + d * sin(a), nucR * (0.9 + 0.2 * rng.uniformDouble()),
                           1.0 + 0.25 * rng.uniformDouble(), Double.pi * rng.uniformDouble()))
        }
        let dnaLevel = 2600.0 * exp(0.35 * q.dnaIntensity + 0.6 * condense)
        let edge = 1.6 / (1.0 + 1.5 * condense)
        let chromatin = (0..<(6 + Int(10 * condense))).map { _ -> (Double, Double, Double, Double) in
            let n = nuclei[rng.below(nuclei.count)]
            let rr = n.r * 0.8 * rng.uniformDouble().squareRoot(), aa = 2 * Double.pi * rng.uniformDouble()
            return (n.x + rr * cos(aa), n.y + rr * sin(aa), (0.9 + 1.2 * rng.uniformDouble()) * s,
                    (0.3 + 1.2 * condense) * rng.uniformDouble())
        }

        // Microtubules: an angular profile of fibres (a table over angle), brighter near the nucleus.
        let tubLevel = 1500.0 * exp(0.45 * q.tubulinLevel)
        let fibreContrast = 0.4 * exp(0.6 * q.tubulinFibres)
        let fibres = 14 + rng.below(10)
        var angular = [Double](repeating: 0, count: 256)
        for _ in 0..<fibres {
            let a0 = 2 * Double.pi * rng.uniformDouble(), w = 0.03 + 0.04 * rng.uniformDouble()
            let amp = 0.5 + rng.uniformDouble()
            for i in 0..<256 {
                var d = abs(2 * Double.pi * Double(i) / 256 - a0)
                d = min(d, 2 * Double.pi - d)
                angular[i] += amp * exp(-d * d / (2 * w * w))
            }
        }
        let meanAngular = angular.reduce(0, +) / 256
        for i in 0..<256 { angular[i] = angular[i] / meanAngular - 1 }

        // Actin: the cortex and, with aggregation, bright puncta in the cytoplasm.
        let cortex = 2400.0 * exp(0.5 * q.actinCortex)
        let punctaRate = 0.5 + 12.0 / (1.0 + exp(-(q.actinPuncta - 1.0)))
        var puncta: [(Double, Double)] = []
        let nP = poisson(punctaRate, &rng)
        for _ in 0..<nP {
            let rr = cellR * (0.35 + 0.55 * rng.uniformDouble()), aa = 2 * Double.pi * rng.uniformDouble()
            puncta.append((c + offset.0 + rr * cos(aa), c + offset.1 + rr * sin(aa)))
        }
        let punctaAmp = 5000.0, punctaR = 1.5 * s

        let cosA = cos(cellAngle), sinA = sin(cellAngle)
        let plane = size * size
        // The outline's radius by angle, tabulated once per cell.
        let outline: [Double] = (0..<512).map { i in
            let theta = 2 * Double.pi * Double(i) / 512 - Double.pi
            var r = cellR
            for (k, (amp, ph)) in wobble.enumerated() { r *= 1 + amp * cos(Double(k + 2) * theta + ph) }
            return r
        }
        // Camera noise: approximately normal (the sum of four 16-bit uniforms from one draw), cheap.
        var noise = [Float](repeating: 0, count: 3 * plane)
        for k in 0..<noise.count {
            let r = rng.next()
            let sum = Float(r & 0xffff) + Float((r >> 16) & 0xffff) + Float((r >> 32) & 0xffff) + Float(r >> 48)
            noise[k] = (sum / 65536 - 2) * 1.7320508
        }
        for y in 0..<size {
            for x in 0..<size {
                let px = Double(x) + 0.5, py = Double(y) + 0.5
                // Cell outline in the cell's frame: normalized radius rho (1 at the membrane).
                let dx = px - c - offset.0, dy = py - c - offset.1
                let u = dx * cosA + dy * sinA, w = (-dx * sinA + dy * cosA) * cellElong
                let theta = atan2(w, u)
                let rOutline = outline[min(511, max(0, Int((theta + Double.pi) / (2 * Double.pi) * 512)))]
                let rho = (u * u + w * w).squareRoot() / rOutline
                let distToEdge = (rho - 1) * rOutline  // negative inside
                let i = y * size + x
                if distToEdge > 7 * s + 4 {  // background only: no cell signal this far out
                    out[i] = camera(0, noise[i])
                    out[plane + i] = camera(0, noise[plane + i])
                    out[2 * plane + i] = camera(0, noise[2 * plane + i])
                    continue
                }
                let inside = 1.0 / (1.0 + exp(distToEdge / 1.2))

                // DNA
                var dna = 0.0, inNucleus = 0.0
                for n in nuclei {
                    let ex = px - n.x, ey = py - n.y
                    let ca = cos(n.a), sa = sin(n.a)
                    let nu = ex * ca + ey * sa, nw = (-ex * sa + ey * ca) * n.e
                    let nd = (nu * nu + nw * nw).squareRoot() - n.r
                    let m = 1.0 / (1.0 + exp(nd / edge))
                    inNucleus = max(inNucleus, m)
                }
                dna = dnaLevel * inNucleus * 0.7
                for (bx, by, br, ba) in chromatin {
                    let d2 = (px - bx) * (px - bx) + (py - by) * (py - by)
                    if d2 < 16 * br * br { dna += dnaLevel * ba * exp(-d2 / (2 * br * br)) * inNucleus }
                }

                // Tubulin: cytoplasm outside the nucleus, fibres by angle from the cell centre.
                let ang = atan2(py - c, px - c)
                var bin = Int((ang + Double.pi) / (2 * Double.pi) * 256)
                bin = min(max(bin, 0), 255)
                let radial = (((px - c) * (px - c) + (py - c) * (py - c)).squareRoot() / max(cellR, 1))
                let perinuclear = exp(-max(0, radial - 0.35) * 1.5)
                let tub = tubLevel * inside * (1 - 0.7 * inNucleus) * max(0.05, 1 + fibreContrast * angular[bin]) * (0.45 + 0.55 * perinuclear)

                // Actin: cortex ring plus puncta plus a dim interior.
                var act = cortex * exp(-distToEdge * distToEdge / (2 * 1.4 * 1.4 * s * s)) + 350 * inside
                for (qx, qy) in puncta {
                    let d2 = (px - qx) * (px - qx) + (py - qy) * (py - qy)
                    if d2 < 16 * punctaR * punctaR { act += punctaAmp * exp(-d2 / (2 * punctaR * punctaR)) * inside }
                }

                out[i] = camera(dna * gain[0], noise[i])
                out[plane + i] = camera(tub * gain[1], noise[plane + i])
                out[2 * plane + i] = camera(act * gain[2], noise[2 * plane + i])
            }
        }
    }
}

/// Background offset plus shot and read noise, clamped to 16 bits.
@inline(__always)
private func camera(_ value: Double, _ normal: Float) -> UInt16 {
    let signal = value + 180.0
    let noisy = signal + (8.0 * signal.squareRoot() + 25.0) * Double(normal)
    return UInt16(clamping: Int(noisy.rounded()))
}

private func poisson(_ lambda: Double, _ rng: inout RandomStream) -> Int {
    let l = exp(-lambda)
    var k = 0, p = 1.0
    repeat { k += 1; p *= rng.uniformDouble() } while p > l && k < 1000
    return k - 1
}
