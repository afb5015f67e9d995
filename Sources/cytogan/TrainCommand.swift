import ArgumentParser

// Placeholder until its issue lands: it says so and fails, rather than pretending to work.
struct TrainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "train", abstract: "(not built yet)")
    func run() throws { throw ValidationError("'cytogan train' is not built yet") }
}
