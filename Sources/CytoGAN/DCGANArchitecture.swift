import CytoCore
import CytoNN

/// The CytoGAN generator and discriminator (Goldsborough et al. 2017), built from the engine's layers.
///
/// Generator: z [N, latent] -> Dense(s0*s0*g0) -> Reshape [g0, s0, s0] -> BatchNorm -> LeakyReLU
/// -> for each further width: [nearest upsample x2 -> Conv k x k 'same' -> BatchNorm -> LeakyReLU]
/// -> Conv k x k 'same' to `channels` -> tanh, with s0 = size / 2^(blocks).
/// Discriminator: GaussianNoise -> [Conv k x k 'same' (strides 1, 2, 2, 2) -> LeakyReLU] ->
/// Flatten -> Dense(representation) (no activation: the features) -> Dense(1) (a logit/score).
///
/// Layer names: generator "dense0", "reshape0", "bn0", "lrelu0", then per block i "conv<i>"
/// (an `UpsampleConv2D`, or "up<i>" + `Conv2D` when `fusedUpsample` is false: same weights),
/// "bn<i>", "lrelu<i>", and "conv<last>", "tanh"; discriminator "noise", "conv<i>", "lrelu<i>",
/// "flatten", "representation", "output".
public struct DCGANArchitecture: Sendable, Equatable {
    public var size: Int
    public var channels: Int
    public var latent: Int
    public var generatorWidths: [Int]
    public var discriminatorWidths: [Int]
    public var discriminatorStrides: [Int]
    public var representation: Int
    public var kernel: Int
    public var leak: Float
    public var noiseStd: Float
    /// Compute upsample + convolution as four phase convolutions (same result, 9/25 the work).
    public var fusedUpsample: Bool
    /// Pixels the generator draws beyond each side of the image and crops away ("crop" layer),
    /// so its zero-padded convolutions leave no rim at the edges (0: the paper's generator).
    public var outputMargin: Int

    public init(size: Int = 96, channels: Int = 3, latent: Int = 100, generatorWidths: [Int] = [256, 128, 64, 32],
                discriminatorWidths: [Int] = [32, 64, 128, 256], discriminatorStrides: [Int] = [1, 2, 2, 2],
                representation: Int = 100, kernel: Int = 5, leak: Float = 0.2, noiseStd: Float = 0.1, fusedUpsample: Bool = true,
                outputMargin: Int = 0) {
        self.size = size; self.channels = channels; self.latent = latent
        self.generatorWidths = generatorWidths; self.discriminatorWidths = discriminatorWidths
        self.discriminatorStrides = discriminatorStrides; self.representation = representation
        self.kernel = kernel; self.leak = leak; self.noiseStd = noiseStd; self.fusedUpsample = fusedUpsample
        self.outputMargin = outputMargin
    }

    /// The paper's networks on 96 x 96 x 3 crops.
    public static let paper96 = DCGANArchitecture()
    /// A smaller configuration on 64 x 64 x 3.
    public static let small64 = DCGANArchitecture(size: 64, generatorWidths: [128, 64, 32, 16], discriminatorWidths: [16, 32, 64, 128])

    /// Name of the discriminator layer whose output is the cell's feature vector.
    public static let representationLayer = "representation"

    /// Names of the discriminator's convolution blocks' outputs ("lrelu0", "lrelu1", ...): what
    /// `pooled` features pool.
    public var discriminatorBlocks: [String] { discriminatorWidths.indices.map { "lrelu\($0)" } }

    /// Side of the generator's first feature map.
    public var startSize: Int { (size + 2 * outputMargin) >> (generatorWidths.count - 1) }

    /// Checks that the numbers describe buildable networks.
    public func validate() throws {
        func bad(_ m: String) -> CytoError { CytoError(.invalidInput, "architecture: \(m)") }
        guard channels > 0, latent > 0, representation > 0, kernel > 0 else { throw bad("channels, latent, representation and kernel must be positive") }
        guard generatorWidths.count >= 1, generatorWidths.allSatisfy({ $0 > 0 }) else { throw bad("generator widths must be positive") }
        guard discriminatorWidths.count >= 1, discriminatorWidths.allSatisfy({ $0 > 0 }),
              discriminatorStrides.count == discriminatorWidths.count, discriminatorStrides.allSatisfy({ $0 > 0 }) else {
            throw bad("discriminator widths and strides must be positive and as many")
        }
        let blocks = generatorWidths.count - 1
        guard outputMargin >= 0 else { throw bad("output margin must be at least 0") }
        guard size > 0, (size + 2 * outputMargin) % (1 << blocks) == 0 else {
            let drawn = outputMargin == 0 ? "size \(size)" : "size \(size) plus twice the output margin \(outputMargin)"
            throw bad("\(drawn) must be a multiple of \(1 << blocks) for \(blocks) upsampling blocks")
        }
    }

    /// The generator; parameters are zero until `initialize` is called on it.
    public func makeGenerator() throws -> Network {
        try validate()
        let s0 = startSize, g = generatorWidths
        var layers: [any Layer] = [
            Dense(name: "dense0", inputs: latent, outputs: s0 * s0 * g[0]),
            Reshape(name: "reshape0", to: [g[0], s0, s0]),
            BatchNorm(name: "bn0", features: g[0]),
            LeakyReLU(name: "lrelu0", alpha: leak),
        ]
        for i in 1..<g.count {
            if fusedUpsample {
                layers.append(UpsampleConv2D(name: "conv\(i)", inChannels: g[i - 1], outChannels: g[i], kernel: kernel))
            } else {
                layers.append(Upsample2x(name: "up\(i)"))
                layers.append(Conv2D(name: "conv\(i)", inChannels: g[i - 1], outChannels: g[i], kernel: kernel))
            }
            layers.append(BatchNorm(name: "bn\(i)", features: g[i]))
            layers.append(LeakyReLU(name: "lrelu\(i)", alpha: leak))
        }
        layers.append(Conv2D(name: "conv\(g.count)", inChannels: g[g.count - 1], outChannels: channels, kernel: kernel))
        layers.append(Tanh(name: "tanh"))
        if outputMargin > 0 { layers.append(CenterCrop2D(name: "crop", margin: outputMargin)) }
        return try Network(layers)
    }

    /// The discriminator; its input noise draws from `noise` (one stream per purpose).
    public func makeDiscriminator(noise: RandomStream) throws -> Network {
        try validate()
        var layers: [any Layer] = [GaussianNoise(name: "noise", std: noiseStd, rng: noise)]
        var c = channels, s = size
        for (i, (w, st)) in zip(discriminatorWidths, discriminatorStrides).enumerated() {
            layers.append(Conv2D(name: "conv\(i)", inChannels: c, outChannels: w, kernel: kernel, stride: st))
            layers.append(LeakyReLU(name: "lrelu\(i)", alpha: leak))
            c = w
            s = (s + st - 1) / st
        }
        layers.append(Flatten(name: "flatten"))
        layers.append(Dense(name: DCGANArchitecture.representationLayer, inputs: c * s * s, outputs: representation))
        layers.append(Dense(name: "output", inputs: representation, outputs: 1))
        return try Network(layers)
    }
}
