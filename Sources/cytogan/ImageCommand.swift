import ArgumentParser

// Placeholder until its issue lands: it says so and fails, rather than pretending to work.
struct ImageCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "image", abstract: "(not built yet)")
    func run() throws { throw ValidationError("'cytogan image' is not built yet") }
}
