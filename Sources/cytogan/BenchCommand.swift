import ArgumentParser
import CytoCore
import CytoGAN
import CytoNN

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// `cytogan bench`: speed measurements of the engine, printed as JSON lines, and the safetensors
/// round trip of the Python checks. Developer tools: hidden from `cytogan --help`, each still
/// answers its own `--help`.
struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench", abstract: "(development) Measure the engine's speed (JSON lines on stdout).",
        shouldDisplay: false,
        subcommands: [EngineBench.self, SafetensorsRoundTrip.self])
}

/// Per-layer and whole-network timings of the CytoGAN networks, with the same keys as
/// ../shared/bench/torch_cytogan.py so the two can be compared line by line.
struct EngineBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "engine",
        abstract: "(development) Time the CytoGAN networks: per layer, features (batch 256), sampling and one LSGAN step (at the preset's training batch: paper-96 64, small-64 32).",
        shouldDisplay: false)

    @Option(help: "The networks: paper-96 (the paper's 96x96 networks) or small-64.")
    var preset: BenchPreset = .paper96
    @Option(help: "Threads for OpenBLAS and the engine's loops.")
    var threads: Int = 2
    @Option(help: "Timed repetitions per measurement (after one warm-up).")
    var reps: Int = 5
    @Option(help: "Only these measures (repeatable; feature-layers: the discriminator's layers at batch 256, inference; sample-layers: the generator's, forward only; gemm: OpenBLAS's sgemm on one core at a large square and at each layer's shapes, and every rate after it also as a share of that limit).")
    var only: [BenchMeasure] = []
    @Option(help: "Batch of the training step and of sampling (default: the preset's training batch, as the PyTorch peer uses).")
    var batch: Int?
    @Option(help: "Timed repetitions per layer in the per-layer table.")
    var layerReps: Int = 3
    @Option(help: "wall, or cpu: the calling thread's CPU time, steadier on a busy machine (needs --threads 1).")
    var clock: BenchClock = .wall

    func validate() throws {
        guard threads >= 1 else { throw ValidationError("--threads must be at least 1") }
        guard (batch ?? 1) >= 1 else { throw ValidationError("--batch must be at least 1") }
        guard reps >= 1, layerReps >= 1 else { throw ValidationError("--reps and --layer-reps must be at least 1") }
        guard clock == .wall || threads == 1 else {
            throw ValidationError("--clock takes wall, or cpu with --threads 1")
        }
    }

    func run() throws {
        Engine.setThreads(threads)
        useCPUClock = clock == .cpu
        let arch = preset.architecture
        let which: [BenchMeasure] = only.isEmpty ? [.layers, .train, .features, .sample] : only
        let bench = try NetworkBench(arch: arch, threads: threads, batch: batch ?? preset.trainingBatch())
        let common: [String: JSON] = [
            "peer": "cytogan", "blas_kernels": JSON(BLASKernels.current), "conv_kernels": JSON(Conv2D.directKernelName), "threads": JSON(threads), "size": JSON(arch.size), "channels": JSON(arch.channels),
            "latent": JSON(arch.latent), "rep": JSON(arch.representation),
            "g_widths": .array(arch.generatorWidths.map { JSON($0) }), "d_widths": .array(arch.discriminatorWidths.map { JSON($0) }),
            "preset": JSON(preset.rawValue), "clock": JSON(clock.rawValue),
        ]
        // With `gemm`: OpenBLAS's sgemm on one core at a large square first (the machine's limit
        // for this kernel), and every rate in the lines after it also as a share of that limit
        // times the thread count (`..._of_limit`).
        var limit: Double? = nil
        func emit(_ fields: [String: JSON]) {
            var line = common.merging(fields) { $1 }
            if let limit {
                for (key, value) in fields where key.hasSuffix("gflop_per_s") {
                    if case .double(let v) = value { line[String(key.dropLast("gflop_per_s".count)) + "of_limit"] = rounded(v / limit, 3) }
                }
            }
            print(JSON.object(line).serialized)
            fflush(nil)
        }
        if which.contains(.gemm) {
            let one = BLASKernels.sgemmGFLOPs(m: 1024, n: 1024, k: 1024, seconds: 0.2, rounds: 5)
            emit(["measure": "gemm_limit", "m": 1024, "n": 1024, "k": 1024, "gflop_per_s": rounded(one, 1),
                  "limit_gflop_per_s": rounded(one * Double(threads), 1)])
            for var line in try bench.gemmTable() {
                if case .double(let v)? = line["gflop_per_s"] { line["share_of_one_core"] = rounded(v / one, 3) }
                emit(line)
            }
            limit = one * Double(threads)
        }
        if which.contains(.layers) {
            for line in try bench.layerTable(reps: layerReps) { emit(line) }
        }
        if which.contains(.featureLayers) {
            for line in try bench.layerTable(reps: layerReps, mode: .features) { emit(line) }
        }
        if which.contains(.sampleLayers) {
            for line in try bench.layerTable(reps: layerReps, mode: .sampling) { emit(line) }
        }
        if which.contains(.train) { emit(try bench.trainStep(reps: reps)) }
        if which.contains(.features) { emit(try bench.features(reps: reps)) }
        if which.contains(.sample) { emit(try bench.sample(reps: reps)) }
    }
}

/// `bench engine --preset`: the networks timed.
enum BenchPreset: String, CaseIterable, ExpressibleByArgument {
    case paper96 = "paper-96", small64 = "small-64"

    var architecture: DCGANArchitecture { self == .paper96 ? .paper96 : .small64 }
    /// The batch the preset trains with, which the peer's script is given too.
    func trainingBatch() throws -> Int { try GANConfig.preset(rawValue).batchSize }
}

/// `bench engine --only`: one measurement.
enum BenchMeasure: String, CaseIterable, ExpressibleByArgument {
    case train, features, sample, layers
    case featureLayers = "feature-layers"
    case sampleLayers = "sample-layers"
    /// OpenBLAS's sgemm on one core: at a large square (the limit) and at each layer's shapes.
    case gemm
}

/// `bench engine --clock`: what a timing reads.
enum BenchClock: String, CaseIterable, ExpressibleByArgument {
    case wall, cpu
}

/// Time the thread's CPU use instead of the wall clock (single-threaded runs on a busy machine).
nonisolated(unsafe) private var useCPUClock = false

/// Seconds of the monotonic clock (or of this thread's CPU time).
private func now() -> Double {
    useCPUClock ? MonotonicClock.threadCPUSeconds() : MonotonicClock.seconds()
}

/// Runs `body` once to warm up, then `reps` timed times; returns the seconds of each.
private func timed(reps: Int, _ body: () throws -> Void) rethrows -> [Double] {
    try body()
    var out: [Double] = []
    for _ in 0..<reps {
        let t = now()
        try body()
        out.append(now() - t)
    }
    return out
}

private func median(_ v: [Double]) -> Double {
    let s = v.sorted()
    return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
}

private func rounded(_ v: Double, _ digits: Int = 2) -> JSON {
    let p = pow(10.0, Double(digits))
    return .double((v * p).rounded() / p)
}

/// The generator and discriminator of one architecture with seeded weights and inputs.
private struct NetworkBench {
    let arch: DCGANArchitecture
    let threads: Int
    /// Batch of the training step and of sampling.
    let batch: Int
    let g: Network
    let d: Network

    init(arch: DCGANArchitecture, threads: Int, batch: Int) throws {
        self.arch = arch
        self.threads = threads
        self.batch = batch
        g = try arch.makeGenerator()
        d = try arch.makeDiscriminator(noise: RandomStream(seed: 42, purpose: "noise"))
        var rng = RandomStream(seed: 42, purpose: "init")
        g.initialize(.normal(std: 0.02), rng: &rng)
        d.initialize(.normal(std: 0.02), rng: &rng)
    }

    func images(_ n: Int, seed: UInt64) -> Tensor {
        var rng = RandomStream(seed: seed, purpose: "bench-data")
        let t = Tensor(Shape(n, arch.channels, arch.size, arch.size))
        for i in 0..<t.count { t.data[i] = rng.uniform(-1, 1) }
        return t
    }

    func latent(_ n: Int, seed: UInt64) -> Tensor {
        var rng = RandomStream(seed: seed, purpose: "bench-latent")
        let z = Tensor(Shape(n, arch.latent))
        rng.fillNormal(z.buffer)
        return z
    }

    /// FLOPs of one pass over `net` for an input shape: (forward, backward) where the backward
    /// counts the parameter gradients and the input gradients of every layer but the first.
    /// `effective` counts what a literal computation would (upsample + 5x5 convolution).
    func flops(_ net: Network, _ input: Shape, through name: String? = nil, effective: Bool) throws -> (forward: Double, backward: Double, backwardInput: Double) {
        var s = input, f = 0.0, bp = 0.0, bi = 0.0
        let end = name.flatMap { net.index(of: $0) } ?? net.layers.count - 1
        for (i, l) in net.layers.enumerated() where i <= end {
            let c = l.flops(for: s)
            let scale = effective && c.forward > 0 ? c.effectiveForward / c.forward : 1
            f += c.forward * scale
            bp += c.backwardParameters * scale
            if i > 0 { bi += c.backwardInput * scale }
            s = try l.outputShape(for: s)
        }
        return (f, bp + bi, bi)
    }

    func throughput(_ measure: String, batch: Int, secs: [Double], flops: Double, effective: Double) -> [String: JSON] {
        let ips = secs.map { Double(batch) / $0 }.sorted()
        let t = median(secs)
        return ["measure": .string(measure), "batch": JSON(batch),
                "images_per_s": .object(["min": rounded(ips[0]), "median": rounded(median(ips)), "max": rounded(ips[ips.count - 1])]),
                "gflop_per_s": rounded(flops / t / 1e9, 1), "effective_gflop_per_s": rounded(effective / t / 1e9, 1),
                "ms": rounded(t * 1000, 1)]
    }

    /// One LSGAN step as CytoGAN takes it (at `batch`).
    func trainStep(reps: Int) throws -> [String: JSON] {
        let step = GANTrainingStep(generator: g, discriminator: d,
                                   generatorOptimizer: Adam(parameters: g.parameters, learningRate: .paper(2e-4), beta1: 0.5),
                                   discriminatorOptimizer: Adam(parameters: d.parameters, learningRate: .paper(7e-5), beta1: 0.5),
                                   loss: .lsgan, latent: arch.latent, seed: 42)
        let real = images(batch, seed: 1)
        let secs = try timed(reps: reps) { _ = try step.step(real: real) }
        let img = real.shape
        func total(_ eff: Bool) throws -> Double {
            let gf = try flops(g, Shape(batch, arch.latent), effective: eff)
            let d2 = try flops(d, img.withBatch(2 * batch), effective: eff)
            let d1 = try flops(d, img, effective: eff)
            // G forward; D forward and backward (parameters, and inputs of all layers but the first)
            // on 2B; D forward and input backward on B; G backward (all but the latent's gradient).
            return gf.forward + d2.forward + d2.backward + d1.forward + d1.backwardInput + gf.backward
        }
        return throughput("train_step", batch: batch, secs: secs, flops: try total(false), effective: try total(true))
    }

    /// Discriminator features (inference, batch 256).
    func features(reps: Int) throws -> [String: JSON] {
        let batch = 256
        d.training = false
        let x = images(batch, seed: 2)
        let rep = DCGANArchitecture.representationLayer
        let secs = try timed(reps: reps) { _ = try d.forward(x, through: rep) }
        let f = try flops(d, x.shape, through: rep, effective: false).forward
        return throughput("features", batch: batch, secs: secs, flops: f, effective: f)
    }

    /// Generator samples (inference, at `batch`), latent draw included.
    func sample(reps: Int) throws -> [String: JSON] {
        g.training = false
        var rng = RandomStream(seed: 3, purpose: "bench-latent")
        let z = Tensor(Shape(batch, arch.latent))
        let secs = try timed(reps: reps) {
            rng.fillNormal(z.buffer)
            _ = try g.forward(z)
        }
        let f = try flops(g, z.shape, effective: false).forward, e = try flops(g, z.shape, effective: true).forward
        return throughput("sample", batch: batch, secs: secs, flops: f, effective: e)
    }

    /// OpenBLAS's sgemm on one core at the matrix shapes of each layer in the training step (G at
    /// `batch`, D at twice that): a convolution unfolded, M = output channels, K = input channels
    /// x taps (an upsampling convolution: its phase convolutions on the low-resolution input, 3 x 3
    /// for a 5 x 5 kernel), N = the output pixels of as many images as fit in 4,096 columns (at least one);
    /// a dense layer, M = batch, N = outputs, K = inputs. What the GEMM path could reach there.
    func gemmTable() throws -> [[String: JSON]] {
        var lines: [[String: JSON]] = []
        for (netName, net, batchSize) in [("generator", g, batch), ("discriminator", d, 2 * batch)] {
            var s = net === g ? Shape(batchSize, arch.latent) : Shape(batchSize, arch.channels, arch.size, arch.size)
            for layer in net.layers {
                let out = try layer.outputShape(for: s)
                var mnk: (Int, Int, Int)? = nil
                func columns(_ plane: Int) -> Int { plane * max(1, min(batchSize, 4096 / plane)) }
                if let c = layer as? Conv2D {
                    mnk = (c.outChannels, columns(out.dims[2] * out.dims[3]), c.inChannels * c.kernelH * c.kernelW)
                } else if let u = layer as? UpsampleConv2D {
                    mnk = (u.outChannels, columns(s.dims[2] * s.dims[3]), u.inChannels * u.phaseKernel * u.phaseKernel)
                } else if let dl = layer as? Dense {
                    mnk = (batchSize, dl.outputs, dl.inputs)
                }
                if let (m, n, k) = mnk {
                    let rate = BLASKernels.sgemmGFLOPs(m: m, n: n, k: k)
                    lines.append(["measure": "gemm", "net": .string(netName), "layer": .string(layer.name), "kind": .string(layer.kind),
                                  "m": JSON(m), "n": JSON(n), "k": JSON(k), "gflop_per_s": rounded(rate, 1)])
                }
                s = out
            }
        }
        return lines
    }

    /// Which passes `layerTable` times.
    enum LayerMode { case training, features, sampling }

    /// Forward and backward time of each layer on its input inside the network (G at `batch`,
    /// D at twice that as in the training step), training mode; `.features`: the discriminator up
    /// to its representation at batch 256, `.sampling`: the generator at `batch`, both in
    /// inference mode and forward only.
    func layerTable(reps: Int, mode: LayerMode = .training) throws -> [[String: JSON]] {
        var lines: [[String: JSON]] = []
        let features = mode == .features, inference = mode != .training
        let nets = switch mode {
        case .training: [("generator", g, latent(batch, seed: 4)), ("discriminator", d, images(2 * batch, seed: 5))]
        case .features: [("discriminator", d, images(256, seed: 5))]
        case .sampling: [("generator", g, latent(batch, seed: 4))]
        }
        for (netName, net, input) in nets {
            net.training = !inference
            let last = features ? net.index(of: DCGANArchitecture.representationLayer)! : net.layers.count - 1
            _ = try net.forward(input, through: net.layers[last].name)
            var x = input
            for (i, layer) in net.layers.enumerated() where i <= last {
                let xin = x.clone()
                x = net.output(of: layer.name)!
                let out = try layer.forward(xin)
                let grad = Tensor(out.shape)
                var rng = RandomStream(seed: UInt64(i), purpose: "bench-grad")
                rng.fillNormal(grad.buffer, mean: 0, std: 1e-3)
                let fwd = median(try timed(reps: reps) { _ = try layer.forward(xin) })
                if inference {
                    let c = layer.flops(for: xin.shape)
                    var line: [String: JSON] = [
                        "measure": "layer", "net": .string(netName), "layer": .string(layer.name), "kind": .string(layer.kind),
                        "input": .array(xin.shape.dims.map { JSON($0) }), "output": .array(out.shape.dims.map { JSON($0) }),
                        "batch": JSON(xin.shape.batch), "forward_ms": rounded(fwd * 1000, 3),
                    ]
                    if c.forward > 0 { line["forward_gflop_per_s"] = rounded(c.forward / fwd / 1e9, 1) }
                    lines.append(line)
                    continue
                }
                let bwd = median(try timed(reps: reps) { _ = try layer.backward(grad, inputGradient: true, parameterGradients: true) })
                // The training step runs the two halves apart: D's own step wants only its weights'
                // gradient, G's step only the gradient through D, down to D's input (G's own input,
                // the latent vector, needs none).
                let bwdInput = i == 0 && net === g ? 0 : median(try timed(reps: reps) { _ = try layer.backward(grad, inputGradient: true, parameterGradients: false) })
                let bwdWeights = layer.parameters.isEmpty ? 0
                    : median(try timed(reps: reps) { _ = try layer.backward(grad, inputGradient: false, parameterGradients: true) })
                let c = layer.flops(for: xin.shape)
                var line: [String: JSON] = [
                    "measure": "layer", "net": .string(netName), "layer": .string(layer.name), "kind": .string(layer.kind),
                    "input": .array(xin.shape.dims.map { JSON($0) }), "output": .array(out.shape.dims.map { JSON($0) }),
                    "batch": JSON(xin.shape.batch), "forward_ms": rounded(fwd * 1000, 3), "backward_ms": rounded(bwd * 1000, 3),
                    "input_gradient_ms": rounded(bwdInput * 1000, 3), "weight_gradient_ms": rounded(bwdWeights * 1000, 3),
                ]
                if c.forward > 0 {
                    line["forward_gflop_per_s"] = rounded(c.forward / fwd / 1e9, 1)
                    line["backward_gflop_per_s"] = rounded((c.backwardInput + c.backwardParameters) / bwd / 1e9, 1)
                    if bwdInput > 0 { line["input_gradient_gflop_per_s"] = rounded(c.backwardInput / bwdInput / 1e9, 1) }
                    if bwdWeights > 0 { line["weight_gradient_gflop_per_s"] = rounded(c.backwardParameters / bwdWeights / 1e9, 1) }
                    if c.effectiveForward != c.forward {
                        line["effective_forward_gflop_per_s"] = rounded(c.effectiveForward / fwd / 1e9, 1)
                    }
                }
                lines.append(line)
            }
        }
        return lines
    }
}

/// Reads a safetensors file, reports what it holds, and writes it back (as F32) with the same
/// metadata plus "roundtrip" = "cytogan" and one added tensor, "roundtrip.sums": the sum of each
/// input tensor in name order. The Python checks use it to test both directions of the format.
struct SafetensorsRoundTrip: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "safetensors-roundtrip", abstract: "Read a safetensors file and write it back with a checksum tensor.",
        shouldDisplay: false)

    @Argument(help: "Input .safetensors file.") var input: String
    @Argument(help: "Output .safetensors file.") var output: String

    func run() throws {
        let f = try SafeTensors.read(input)
        let names = f.tensors.keys.sorted()
        var sums: [Float] = []
        var report: [String: JSON] = [:]
        for name in names {
            let t = f.tensors[name]!
            var s = 0.0
            for i in 0..<t.count { s += Double(t.data[i]) }
            sums.append(Float(s))
            report[name] = .object(["dtype": .string(f.dtypes[name]!), "shape": .array(t.shape.dims.map { JSON($0) }), "sum": .double(s)])
        }
        var tensors = f.names.map { (name: $0, tensor: f.tensors[$0]!) }
        tensors.append((name: "roundtrip.sums", tensor: try Tensor(Shape(sums.count), sums)))
        var meta = f.metadata
        meta["roundtrip"] = "cytogan"
        try SafeTensors.write(tensors, metadata: meta, to: output)
        print(JSON.object(["tensors": .object(report), "metadata": .object(f.metadata.mapValues { .string($0) })]).serialized)
    }
}
