import ArgumentParser

// Placeholder until its issue lands: it says so and fails, rather than pretending to work.
struct DemoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "demo", abstract: "(not built yet)")
    func run() throws { throw ValidationError("'cytogan demo' is not built yet") }
}
