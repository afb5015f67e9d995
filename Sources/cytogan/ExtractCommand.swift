import ArgumentParser

// Placeholder until its issue lands: it says so and fails, rather than pretending to work.
struct ExtractCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "extract", abstract: "(not built yet)")
    func run() throws { throw ValidationError("'cytogan extract' is not built yet") }
}
