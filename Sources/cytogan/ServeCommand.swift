import ArgumentParser

// Placeholder until its issue lands: it says so and fails, rather than pretending to work.
struct ServeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "serve", abstract: "(not built yet)")
    func run() throws { throw ValidationError("'cytogan serve' is not built yet") }
}
