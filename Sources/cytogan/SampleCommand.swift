import ArgumentParser

// Placeholder until its issue lands: it says so and fails, rather than pretending to work.
struct SampleCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "sample", abstract: "(not built yet)")
    func run() throws { throw ValidationError("'cytogan sample' is not built yet") }
}
