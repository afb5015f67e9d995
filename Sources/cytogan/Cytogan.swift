import ArgumentParser
import CytoNN

/// The command line: `serve` for the long-lived JSON-RPC worker, and batch subcommands that call
/// the same library code for shell pipelines.
@main
struct Cytogan: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cytogan",
        abstract: "GAN-based morphological profiling of cell images.",
        discussion: "Run `cytogan demo` for the whole job on built-in synthetic data.",
        version: "0.1.0",
        subcommands: [
            ServeCommand.self, TrainCommand.self, ExtractCommand.self, SampleCommand.self, EncodeCommand.self,
            SynthCommand.self, DemoCommand.self, BenchCommand.self, ImageCommand.self, ProfileCommand.self, EvaluateCommand.self,
        ])

    /// Asks OpenBLAS for the CPU's best GEMM kernels first (it may start the program again),
    /// then parses and runs the command as ArgumentParser's own `main` does.
    static func main() async {
        BLASKernels.relaunchWithBestKernels()
        do {
            var command = try parseAsRoot()
            if var command = command as? AsyncParsableCommand {
                try await command.run()
            } else {
                try command.run()
            }
        } catch {
            exit(withError: error)
        }
    }
}
