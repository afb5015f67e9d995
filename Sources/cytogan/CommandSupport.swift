import ArgumentParser
import CytoCore
import Foundation

/// Runs `body`, turning a CytoError into a one-line message on stderr and exit status 1: every
/// subcommand reports bad input the same way (the thing at fault, then the fault).
func reportingErrors(_ body: () throws -> Void) throws {
    do { try body() } catch let e as CytoError {
        FileHandle.standardError.write(Data("cytogan: error: \(e.description)\n".utf8))
        throw ExitCode(1)
    }
}
