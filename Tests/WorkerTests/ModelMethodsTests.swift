import CellImage
import CytoCore
import CytoGAN
import Foundation
import Testing
@testable import Worker

/// The GAN-backed methods on a tiny model, in process: config overrides, latents, features against
/// CytoGAN's extractor called directly, a training job paused and stopped at shutdown, and the
/// model slot's turns between the training thread and requests.
@Suite(.serialized) struct ModelMethodsTests {
    static let tiny: JSON = ["architecture": ["size": 16, "generator_widths": [16, 8, 4], "discriminator_widths": [4, 8, 16],
                                              "discriminator_strides": [1, 2, 2], "representation": 8, "latent": 10],
                             "batch_size": 4]

    func folder() -> String {
        let d = NSTemporaryDirectory() + "cytogan-model-tests-\(UUID().uuidString)"
        try! FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        return d
    }

    /// A harness holding a fresh tiny model, and `n` of its own generated cells as 16-bit TIFFs.
    func withModelAndCells(_ n: Int = 6) -> (Harness, [String], String) {
        let h = Harness(), dir = folder()
        let info = h.call("model/create", ["preset": "small-64", "config": ModelMethodsTests.tiny, "seed": 3])
        precondition(info["result"]?["featureDim"] == 8, "\(info.serialized)")
        let g = h.call("samples/generate", ["count": .int(Int64(n)), "output": ["dir": .string(dir), "format": "tiff"], "returnLatents": false])
        let files = g["result"]?["files"]?.arrayValue?.compactMap(\.stringValue) ?? []
        precondition(files.count == n, "\(g.serialized)")
        return (h, files, dir)
    }

    @Test func configOverridesLayOverThePresetAndNameTheirField() throws {
        let base = try GANConfig.preset("small-64", loss: .dcgan, seed: 7)
        let c = try decodeConfig(base: base, overrides: Params(["architecture": ["size": 32, "generator_widths": [32, 16, 8],
                                                                                  "discriminator_widths": [8, 16, 32], "discriminator_strides": [1, 2, 2]],
                                                                  "batch_size": 8], path: "config"))
        #expect(c.architecture.size == 32 && c.preprocessing.size == 32 && c.batchSize == 8)
        #expect(c.loss == .dcgan && c.seed == 7 && c.augmentation == base.augmentation && c.architecture.latent == base.architecture.latent)
        #expect(c.discriminatorRate == base.discriminatorRate)
        func field(_ o: JSON) -> String? {
            do { _ = try decodeConfig(base: base, overrides: Params(o.objectValue!, path: "config")); return nil } catch {
                let e = RPCError(any: error)
                return e.code == ErrorCode.invalidParams ? e.data["field"]?.stringValue : "code \(e.code)"
            }
        }
        #expect(field(["batch_size": "x"]) == "config.batch_size")
        #expect(field(["batch_size": 1]) == "config.batch_size")
        #expect(field(["architecture": ["size": 30]]) == "config.architecture")
        #expect(field(["architecture": ["latent": "x"]]) == "config.architecture.latent")
        #expect(field(["architecture": ["latent": .null]]) == "config.architecture.latent")
        #expect(field(["architecture": ["depth": 3]]) == "config.architecture.depth")
        #expect(field(["preprocessing": ["crop_size": 0]]) == "config.preprocessing.crop_size")
        #expect(field(["loss": "wgangp"]) == "config.loss")
        #expect(field(["learning_rate": 1]) == "config.learning_rate")
    }

    @Test func latentsResolveAgainstTheModelsSize() throws {
        let dim = 10
        let z = NoiseSpace.draw(count: 3, latent: dim, seed: 4)
        #expect(try LatentSpec(Params(["seed": 4])).resolve(dim: dim) == Array(z[0..<dim]))
        let twoSeeds = try LatentSpec(Params(["seeds": [4, 5]])).resolve(dim: dim)
        let a = NoiseSpace.draw(count: 1, latent: dim, seed: 4), b = NoiseSpace.draw(count: 1, latent: dim, seed: 5)
        #expect(twoSeeds == (0..<dim).map { (a[$0] + b[$0]) / 2 })
        let wrong = try LatentSpec(Params(["vector": [1, 2, 3]], path: "latents[2]", index: 2))
        do { _ = try wrong.resolve(dim: dim); Issue.record("a vector of 3 values passed for 10") } catch let e as CytoError {
            #expect(e.kind == .shapeMismatch && e.field == "latents[2].vector" && e.index == 2)
        }
        #expect(throws: RPCError.self) { try LatentSpec(Params(["seed": 1, "vector": [1]])) }
        #expect(throws: RPCError.self) { try LatentSpec(Params(["vector": [1, "x"]])) }
        #expect(throws: RPCError.self) { try LatentSpec(Params(["seed": -1])) }
    }

    @Test func cropsAreCheckedWholeBeforeAnyWork() throws {
        let p = Params(["crops": [["path": "a.tif", "metadata": ["Metadata_Well": "B02", "Metadata_Dose": 0.5]],
                                  ["paths": ["d.tif", "t.tif"], "centre": [3, 4], "metadata": ["Metadata_Plate": "P1"], "id": 9]]])
        let c = try decodeCrops(p, "crops", count: 1...10, channels: [2, 0], common: [("Metadata_Batch", "b")])
        #expect(c.specs[0].source == .file("a.tif", channels: [2, 0]) && c.specs[1].region == .centre(x: 3, y: 4))
        #expect(c.metadataColumns == ["Metadata_Batch", "Metadata_Dose", "Metadata_Well", "Metadata_Plate"])
        #expect(c.metadata == [["b", "0.5", "B02", ""], ["b", "", "", "P1"]])
        #expect(c.ids == [.null, 9])
        func field(_ crop: JSON) -> String? {
            do { _ = try decodeCrops(Params(["crops": [["path": "ok.tif"], crop]]), "crops", count: 1...10, channels: nil); return nil } catch {
                let e = RPCError(any: error)
                #expect(e.code == ErrorCode.invalidParams && e.data["index"] == 1)
                return e.data["field"]?.stringValue
            }
        }
        #expect(field(["path": "x.tif", "box": [1, 2, 3]]) == "crops[1].box")
        #expect(field(["path": "x.tif", "centre": [1, 2], "box": [1, 2, 3, 4]]) == "crops[1].box")
        #expect(field(["paths": ["a"], "channels": [0]]) == "crops[1].channels")
        #expect(field(["path": "x.tif", "label": 3]) == "crops[1].label")
        #expect(field(["path": "x.tif", "size": 3]) == "crops[1].size")
        #expect(field(["path": "x.tif", "metadata": ["Metadata_X": ["nested"]]]) == "crops[1].metadata.Metadata_X")
        #expect(field(["path": "x.tif", "id": 1.5]) == "crops[1].id")
        #expect(field(["box": [0, 0, 1, 1]]) == "crops[1].path")
    }

    @Test func featuresThroughTheProtocolEqualTheExtractorCalledDirectly() throws {
        let (h, files, dir) = withModelAndCells()
        let saved = dir + "/m.safetensors"
        #expect(h.call("model/save", ["path": .string(saved)])["result"]?["step"] == 0)
        let crops = JSON.array(files.enumerated().map { i, f in ["path": .string(f), "metadata": ["Metadata_Cell": .int(Int64(i))]] })
        let r = h.call("features/extract", ["crops": crops, "batchSize": 6, "keep": true, "table": "t"])["result"]
        let got = r?["features"]?.arrayValue?.map { $0.arrayValue!.map { Float($0.doubleValue!) } }
        let model = try GANModel.load(from: saved)
        let fx = try FeatureExtractor(model: model)
        let want = try fx.extract(specs: files.map { CropSpec.file($0) }, loader: CropLoader(preprocessing: model.config.preprocessing))
        #expect(want.errors.allSatisfy { $0 == nil })
        #expect(got == stride(from: 0, to: want.features.count, by: 8).map { Array(want.features[$0..<($0 + 8)]) })
        #expect(r?["kept"] == ["table": "t", "rows": 6, "tableRows": 6])
        let t = try h.server.profiles.table("t", field: "t")
        #expect(t.metadataColumns == ["Metadata_Cell"] && t.featureNames == fx.names)
        #expect(t.metadata.map { $0[0] } == (0..<6).map(String.init))
        #expect(t.features == want.features.map(Double.init))
        // A manifest naming its one path column by `pathColumns` reads multi-channel files, as with `pathColumn`.
        try ("file,Metadata_Cell\n" + files.enumerated().map { "\($1),\($0)" }.joined(separator: "\n") + "\n")
            .write(toFile: dir + "/m.csv", atomically: true, encoding: .utf8)
        for manifest: JSON in [["path": .string(dir + "/m.csv"), "pathColumns": ["file"]], ["path": .string(dir + "/m.csv"), "pathColumn": "file"]] {
            let m = h.call("features/extract", ["manifest": manifest])["result"]?["features"]?.arrayValue
            #expect(m?.map { $0.arrayValue!.map { Float($0.doubleValue!) } } == got, "\(manifest)")
        }
        // A crop with the wrong channel count is named by its index.
        let wrong = h.call("features/extract", ["crops": [["path": .string(files[0])], ["path": .string(files[1]), "channels": [0]]]])
        #expect(wrong.code == ErrorCode.shapeMismatch && wrong.errorData?["index"] == 1 && wrong.errorData?["path"] == .string(files[1]))
    }

    @Test func aTrainingJobPausesAndStopsWithACheckpointAtShutdown() throws {
        let (h, _, dir) = withModelAndCells(8)
        let ck = dir + "/ck"
        let start = h.call("train/start", ["data": ["directory": .string(dir)], "steps": 1_000_000, "checkpoint": ["directory": .string(ck), "every": 1000]])
        let id = start["result"]?["jobId"] ?? .null
        #expect(start["result"]?["kind"] == "train")
        let deadline = Date().addingTimeInterval(60)
        while (h.call("jobs/status", ["jobId": id])["result"]?["progress"]?.doubleValue ?? 0) < 5 && Date() < deadline { usleep(10_000) }
        let paused = h.call("jobs/pause", ["jobId": id])["result"]
        #expect(paused?["state"] == "paused")
        // While paused the model serves requests, and its step is the job's.
        let saved = h.call("model/save", ["path": .string(dir + "/paused.safetensors")])["result"]
        #expect(saved?["step"] == paused?["progress"])
        #expect(h.call("model/info")["result"]?["trainingJob"] == id)
        #expect(h.call("model/create", ["preset": "small-64"]).code == ErrorCode.jobConflict)
        #expect(h.call("jobs/resume", ["jobId": id])["result"]?["state"] == "running")
        let end = h.call("shutdown")["result"]?["jobs"]?.arrayValue?.first
        #expect(end?["state"] == "stopped")
        let step = end?["result"]?["step"]?.intValue ?? -1
        #expect(step > 5)
        let file = ck + "/checkpoint-" + String(repeating: "0", count: 9 - String(step).count) + String(step) + ".safetensors"
        #expect(end?["result"]?["checkpoint"] == .string(file))
        #expect(try GANModel.load(from: file).step == step)
    }

    @Test func theTrainingThreadLetsWaitingRequestsInBetweenSteps() throws {
        let slot = ModelSlot()
        let model = try GANModel(config: decodeConfig(base: GANConfig.preset("small-64"), overrides: Params(ModelMethodsTests.tiny.objectValue!)))
        try slot.replace(with: model, preset: "small-64", checkpoint: nil)
        _ = try slot.beginTraining(job: "job-1")
        #expect(throws: RPCError.self) { try slot.refuseWhileTraining() }
        let ran = Locked(false)
        let finished = DispatchSemaphore(value: 0)
        DispatchQueue.global().async {
            _ = try? slot.use { _ in ran.withLock { $0 = true } }
            finished.signal()
        }
        while slot.waiters == 0 { usleep(1000) }
        usleep(20_000)
        #expect(!ran.withLock { $0 })        // the training thread holds the model mid-step
        slot.stepBoundary(step: 1)           // between steps: the request runs, then training goes on
        #expect(ran.withLock { $0 })
        finished.wait()
        #expect(try slot.info()["step"] == 1)
        slot.endTraining(job: "job-1")
        try slot.refuseWhileTraining()
    }
}
