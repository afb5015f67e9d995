// swift-tools-version:6.0
// cytogan: GAN-based morphological profiling of cell images, as a Swift worker process.
// Modules depend downward only:
//   C shims (CBLAS, CTIFF, CPNG, CJSONC, CZlib)
//   -> CytoCore (JSON, CSV, NPY, atomic files, errors)
//   -> CytoNN (tensors, layers, losses, optimizers, safetensors)   CellImage (decode, crop, normalize, write)
//   -> Profiling (aggregate, normalize, score, linear algebra, logistic regression)
//   -> CytoGAN (architectures, trainer, features, sampling, synth, realism)
//   -> Worker (JSON-RPC 2.0 over stdio) -> cytogan (command line)
import PackageDescription

let package = Package(
    name: "cytogan",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "cytogan", targets: ["cytogan"]),
        .library(name: "CytoGAN", targets: ["CytoGAN"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    ],
    targets: [
        .systemLibrary(name: "CBLAS", path: "Sources/CBLAS", pkgConfig: "openblas",
                       providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(name: "CTIFF", path: "Sources/CTIFF", pkgConfig: "libtiff-4",
                       providers: [.apt(["libtiff-dev"])]),
        .systemLibrary(name: "CPNG", path: "Sources/CPNG", pkgConfig: "libpng",
                       providers: [.apt(["libpng-dev"])]),
        .systemLibrary(name: "CZlib", path: "Sources/CZlib", pkgConfig: "zlib",
                       providers: [.apt(["zlib1g-dev"])]),
        .systemLibrary(name: "CJSONC", path: "Sources/CJSONC", pkgConfig: "json-c",
                       providers: [.apt(["libjson-c-dev"])]),

        .target(name: "CytoCore", dependencies: ["CJSONC", "CZlib"]),
        .target(name: "CytoNN", dependencies: ["CytoCore", "CBLAS"]),
        .target(name: "CPNGShim", dependencies: ["CPNG"]),
        .target(name: "CellImage", dependencies: ["CytoCore", "CTIFF", "CPNG", "CPNGShim"]),
        .target(name: "CytoGAN", dependencies: ["CytoNN", "CellImage", "Profiling"]),
        .target(name: "Profiling", dependencies: ["CytoCore", "CBLAS"]),
        .target(name: "Worker", dependencies: ["CytoGAN", "Profiling"]),
        .executableTarget(name: "cytogan", dependencies: [
            "Worker", "CytoGAN", "Profiling", "CellImage", "CytoNN",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),

        .testTarget(name: "CytoCoreTests", dependencies: ["CytoCore"]),
        .testTarget(name: "CytoNNTests", dependencies: ["CytoNN"]),
        .testTarget(name: "CellImageTests", dependencies: ["CellImage"]),
        .testTarget(name: "CytoGANTests", dependencies: ["CytoGAN"]),
        .testTarget(name: "ProfilingTests", dependencies: ["Profiling"]),
        .testTarget(name: "WorkerTests", dependencies: ["Worker"]),
    ]
)
