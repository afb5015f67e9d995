// swift-tools-version:6.0
// cytogan: GAN-based morphological profiling of cell images, as a Swift worker process.
// Modules depend downward only:
//   C shims (CBLAS, CTIFF, CPNG, CJSONC, CZlib; CMPIShim loads MPI at run time when present;
//   CConvKernels, the engine's direct convolution kernels)
//   -> CytoCore (JSON, CSV, NPY, atomic files, errors, clocks; the only user of json-c and zlib)
//   -> CytoNN (the engine: tensors, layers, network, losses, optimizers, safetensors, threads,
//      the collective of data-parallel training)
//      CellImage (decode, crop, normalize, write)
//      Profiling (aggregate, normalize, score, linear algebra, logistic regression)
//   -> CytoGAN (DCGAN architecture, training step, augmentation, trainer, features, sampling, synth, realism)
//   -> Worker (JSON-RPC 2.0 over stdio) -> cytogan (command line)
// Every target lists each module it imports.
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
                       providers: [.apt(["libopenblas-dev"]), .brew(["openblas"])]),
        .systemLibrary(name: "CTIFF", path: "Sources/CTIFF", pkgConfig: "libtiff-4",
                       providers: [.apt(["libtiff-dev"]), .brew(["libtiff"])]),
        .systemLibrary(name: "CPNG", path: "Sources/CPNG", pkgConfig: "libpng",
                       providers: [.apt(["libpng-dev"]), .brew(["libpng"])]),
        .systemLibrary(name: "CZlib", path: "Sources/CZlib", pkgConfig: "zlib",
                       providers: [.apt(["zlib1g-dev"]), .brew(["zlib"])]),
        .systemLibrary(name: "CJSONC", path: "Sources/CJSONC", pkgConfig: "json-c",
                       providers: [.apt(["libjson-c-dev"]), .brew(["json-c"])]),

        .target(name: "CytoCore", dependencies: ["CJSONC", "CZlib"]),
        // Loads libmpi at run time (dlopen): MPI is optional, to build and to run.
        .target(name: "CMPIShim", linkerSettings: [.linkedLibrary("dl")]),
        // Direct convolution kernels (AVX-512 / AVX2, chosen at run time) for thin layers.
        .target(name: "CConvKernels"),
        .target(name: "CytoNN", dependencies: ["CytoCore", "CBLAS", "CMPIShim", "CConvKernels"]),
        .target(name: "CPNGShim", dependencies: ["CPNG"]),
        .target(name: "CellImage", dependencies: ["CytoCore", "CTIFF", "CPNG", "CPNGShim"]),
        .target(name: "CytoGAN", dependencies: ["CytoCore", "CytoNN", "CellImage", "Profiling"]),
        .target(name: "Profiling", dependencies: ["CytoCore", "CBLAS"]),
        .target(name: "Worker", dependencies: ["CytoCore", "CytoNN", "CellImage", "CytoGAN", "Profiling"]),
        .executableTarget(name: "cytogan", dependencies: [
            "CytoCore", "CytoNN", "CellImage", "CytoGAN", "Profiling", "Worker",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),

        // Seeded tensors and finite-difference checks, shared by the engine's and the GAN's tests.
        .target(name: "CytoNNTestSupport", dependencies: ["CytoCore", "CytoNN"], path: "Tests/CytoNNTestSupport"),

        .testTarget(name: "CytoCoreTests", dependencies: ["CytoCore"]),
        .testTarget(name: "CytoNNTests", dependencies: ["CytoCore", "CytoNN", "CytoNNTestSupport"]),
        .testTarget(name: "CellImageTests", dependencies: ["CytoCore", "CellImage"]),
        .testTarget(name: "CytoGANTests", dependencies: ["CytoCore", "CytoNN", "CellImage", "CytoGAN", "CytoNNTestSupport"]),
        .testTarget(name: "ProfilingTests", dependencies: ["CytoCore", "Profiling"]),
        .testTarget(name: "WorkerTests", dependencies: ["CytoCore", "CellImage", "CytoGAN", "Profiling", "Worker"]),
    ]
)
