import ArgumentParser

// Placeholder until its issue lands: it says so and fails, rather than pretending to work.
struct ProfileCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "profile", abstract: "(not built yet)")
    func run() throws { throw ValidationError("'cytogan profile' is not built yet") }
}
