import ArgumentParser

// Placeholder until its issue lands: it says so and fails, rather than pretending to work.
struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "bench", abstract: "(not built yet)")
    func run() throws { throw ValidationError("'cytogan bench' is not built yet") }
}
