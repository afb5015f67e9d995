import CellImage
import CytoCore
import CytoGAN
import Foundation

/// The realism measure (PROTOCOL.md §8.8): how close a model's generated cells are to real crops,
/// by CytoGAN's RealismReference, the same numbers `cytogan evaluate realism` prints. Minutes of
/// work for the default 1000 cells, so it can run as a job.
extension Server {
    func registerRealismMethods() {
        register("realism/evaluate", params: ["model", "manifest", "generated", "count", "seed", "folds", "epochs", "background"],
                 summary: "How real generated cells look: Frechet distance of per-cell measurements against the real-vs-real floor, and two-sample classifiers; optionally run as a job.") { req in
            let p = req.params
            let model = try optionalNonEmpty(p, "model")
            let manifest = try ManifestRequest(p, "manifest")
            let generated = p.has("generated") ? try ManifestRequest(p, "generated") : nil
            let options = RealismOptions(count: try p.int("count", default: RealismOptions.defaultCount, in: 2...100_000),
                                         seed: UInt64(try p.int("seed", default: 1, in: 0...Int.max)),
                                         folds: try p.int("folds", default: 4, in: 2...1000),
                                         epochs: try p.int("epochs", default: RealismOptions.defaultEpochs, in: 1...10_000))
            if options.count < options.folds { throw p.error("count", "must be at least folds (\(options.folds))") }
            let background = try p.bool("background", default: false)
            // The model slot also sets the engine's threads; -32015 before reading a manifest.
            let slot = req.server.models
            if model == nil { _ = try slot.config() }
            let evaluation = RealismEvaluation(model: model, manifest: manifest, generated: generated, options: options)
            if background {
                let server = req.server
                return try req.server.jobs.start(kind: "realism", pausable: true, progressToken: req.progressToken) { ctx in
                    .done(try evaluation.run(server: server, check: { try ctx.pausePoint() },
                                             progress: { ctx.progress(Double($0), total: Double($1), message: $2) }))
                }
            }
            return try evaluation.run(server: req.server, check: { try req.checkCancelled() },
                                      progress: { req.progress(Double($0), total: Double($1), message: $2) })
        }
    }
}

/// One `realism/evaluate`, decoded.
struct RealismEvaluation {
    /// A checkpoint to evaluate instead of the current model (which it does not replace).
    var model: String?
    var manifest: ManifestRequest
    var generated: ManifestRequest?
    var options: RealismOptions

    /// Runs the measure. `check` runs between units of work (throws to stop); `progress(done,
    /// total, message)` in units of RealismOptions.units.
    func run(server: Server, check: @escaping () throws -> Void, progress: @escaping (Int, Int, String) -> Void) throws -> JSON {
        let log = server.log
        func open(_ m: ManifestRequest, _ field: String) throws -> StreamingManifest {
            do {
                return try StreamingManifest(path: m.path, root: m.root, columns: m.columns, log: { log.warning($0) })
            } catch var e as CytoError {
                if e.field == nil { e.field = field }
                throw e
            }
        }
        let source = try open(manifest, "manifest")
        let generatedSource = try generated.map { try open($0, "generated") }
        let units = options.units, total = units.reference + units.comparison
        let monitor = RealismMonitor(check: check, log: { log.info("realism/evaluate: \($0)") }, progress: { progress($0, total, $1) })
        // The model: its configuration and step, and its samples when they are the generated set
        // (the current model is held only while sampling).
        let options = options
        func take(_ m: GANModel) throws -> (GANConfig, Int, RealismImages?) {
            (m.config, m.step, generatedSource == nil ? try RealismData.samples(of: m, count: options.count, seed: options.seed, monitor: monitor) : nil)
        }
        func load(_ path: String) throws -> GANModel {
            do { return try GANModel.load(from: path) } catch var e as CytoError {
                if e.field == nil { e.field = "model" }
                throw e
            }
        }
        let (config, step, samples) = try model.map { try take(try load($0)) } ?? server.models.use { try take($0) }
        let pre = try RealismData.preprocessing(of: config, source: source, log: monitor.log)
        var n = options.count
        var files: RealismImages?
        if let generatedSource, let generated {
            files = try RealismData.read(generatedSource, origin: generated.path, preprocessing: pre, limit: n, seed: options.seed,
                                         purpose: "realism-generated", monitor: monitor)
            n = min(n, files!.count)
        }
        let real = try RealismData.read(source, origin: manifest.path, preprocessing: pre, limit: 2 * n, seed: options.seed,
                                        purpose: "realism-real", monitor: monitor)
        var o = options
        o.count = max(real.count / 2, 1)
        let reference: RealismReference
        do { reference = try RealismReference(real: real, options: o, monitor: monitor) } catch var e as CytoError where e.field == "count" {
            e.field = "manifest"
            e.path = manifest.path
            throw e
        }
        let report = try reference.compare(files ?? samples!, monitor: monitor)
        return report.json(step: step)
    }
}
