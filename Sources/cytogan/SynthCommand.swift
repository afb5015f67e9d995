import ArgumentParser

// Placeholder until its issue lands: it says so and fails, rather than pretending to work.
struct SynthCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "synth", abstract: "(not built yet)")
    func run() throws { throw ValidationError("'cytogan synth' is not built yet") }
}
