import ArgumentParser
import CytoNN
import Foundation
import Worker

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// `cytogan serve`: the long-lived JSON-RPC 2.0 worker on stdin/stdout (protocol/PROTOCOL.md).
/// stdout carries protocol messages only; everything for people goes to stderr.
struct ServeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Run the JSON-RPC 2.0 worker on stdin/stdout (one JSON message per line).",
        discussion: """
            Send `initialize` first; see protocol/PROTOCOL.md for every method. At end of input the \
            worker answers what it has read, stops running jobs (checkpointing those that can) and \
            exits 0. SIGTERM and SIGINT do the same after cancelling requests in progress.

            --threads N bounds the computing threads (the engine's pool; OpenBLAS runs one thread \
            inside it). When several workers share a machine (one per CellProfiler or Dask worker), \
            give each its share of the cores: cores divided by workers.
            """)

    @Option(help: "Longest accepted input line in bytes; longer lines are answered with an error.")
    var maxLineBytes: Int = 64 << 20

    @Option(help: "Most messages in one batch array.")
    var maxBatch: Int = 10_000

    @Option(help: "Background jobs that may run at once; the rest wait queued.")
    var jobs: Int = 1

    @Option(help: "Threads for the engine's computations (default: all cores).")
    var threads: Int?

    @Option(help: "How much to log on stderr.")
    var logLevel: LogLevelOption = .info

    func validate() throws {
        guard maxLineBytes >= 1024 else { throw ValidationError("--max-line-bytes must be at least 1024") }
        guard maxBatch >= 1 else { throw ValidationError("--max-batch must be at least 1") }
        guard jobs >= 1 else { throw ValidationError("--jobs must be at least 1") }
        if let threads, threads < 1 { throw ValidationError("--threads must be at least 1") }
    }

    func run() throws {
        // A client that goes away must not kill the worker mid-checkpoint: writes then just fail.
        signal(SIGPIPE, SIG_IGN)
        var options = ServerOptions()
        options.version = Cytogan.configuration.version
        options.maxLineBytes = maxLineBytes
        options.maxBatch = maxBatch
        options.maxRunningJobs = jobs
        options.handleSignals = true
        options.threads = threads
        // OpenBLAS to one thread from the start: the profile methods call it directly, and its own
        // default (every core, per worker) would multiply with the workers a pipeline starts.
        Engine.setThreads(threads ?? ProcessInfo.processInfo.activeProcessorCount)
        let log = Logger(level: logLevel.level)
        let server = Server.standard(options: options, log: log)
        log.info("cytogan \(options.version) worker ready (protocol \(protocolVersion)); send initialize")
        let status = server.serve(input: FileDescriptorSource.stdin)
        if status != 0 { throw ExitCode(status) }
    }
}

/// `serve --log-level`: the worker's log levels by name.
enum LogLevelOption: String, CaseIterable, ExpressibleByArgument {
    case quiet, error, warning, info, debug

    var level: Logger.Level { Logger.Level(name: rawValue)! }
}
