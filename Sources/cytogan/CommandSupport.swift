import ArgumentParser
import CellImage
import CytoCore
import CytoGAN
import Foundation
import Profiling

/// Writes one line to stderr: how every command talks to people (stdout carries results).
func stderrLine(_ s: String) {
    FileHandle.standardError.write(Data((s + "\n").utf8))
}

/// Runs `body`, turning a CytoError into a one-line message on stderr and exit status 1: every
/// subcommand reports bad input the same way (the thing at fault, then the fault).
func reportingErrors(_ body: () throws -> Void) throws {
    do { try body() } catch let e as CytoError {
        stderrLine("cytogan: error: \(e.description)")
        throw ExitCode(1)
    }
}

// The library's enums taken as option values: `--help` lists their raw values, and a wrong value
// is a usage error that names the option and the choices.
extension GANLoss: ExpressibleByArgument {}
extension InterpolationMode: ExpressibleByArgument {}
extension ResizeMode: ExpressibleByArgument {}
extension TIFFCompression: ExpressibleByArgument {}
extension AggregationMethod: ExpressibleByArgument {}
extension DistanceMetric: ExpressibleByArgument {}
extension MOANormalization: ExpressibleByArgument {}
extension NonFinitePolicy: ExpressibleByArgument {}
extension SpherizeMethod: ExpressibleByArgument {}

/// Splits "a,b,c" into trimmed non-empty parts.
func parseList(_ text: String) throws -> [String] {
    let parts = text.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
    guard !parts.isEmpty, parts.allSatisfy({ !$0.isEmpty }) else { throw ValidationError("'\(text)' is not a comma-separated list") }
    return parts
}

/// The manifest columns of `train` and `extract`: where a crop's path(s) are, and optionally the
/// object's centre or bounding box in a whole field and its label mask (CellProfiler's
/// Location_Center_X/Y, an object table's box, a label image), so crops are cut from fields.
struct ManifestColumnOptions: ParsableArguments {
    @Option(name: .customLong("channel-columns"), help: "One path column per channel instead of 'path' (e.g. DNA,Tubulin,Actin).")
    var channelColumns: String?
    @Option(name: .customLong("centre-columns"), help: "X,Y: columns of the object's centre in the field (a window of the model's size around it).")
    var centreColumns: String?
    @Option(name: .customLong("box-columns"), help: "X0,Y0,X1,Y1: columns of the object's bounding box in the field.")
    var boxColumns: String?
    @Option(name: .customLong("mask-column"), help: "Column of a label image; pixels of other objects are zeroed.")
    var maskColumn: String?
    @Option(name: .customLong("label-column"), help: "Column of the object's label in the mask (default: keep every labelled pixel).")
    var labelColumn: String?

    /// The columns as the manifest readers take them; wrong counts are usage errors.
    func columns() throws -> CropManifest.Columns {
        var c = CropManifest.Columns()
        if let channelColumns { c.setPathColumns(try parseList(channelColumns)) }
        if let centreColumns {
            let v = try parseList(centreColumns)
            guard v.count == 2 else { throw ValidationError("--centre-columns takes two columns: X,Y") }
            c.centreX = v[0]; c.centreY = v[1]
        }
        if let boxColumns {
            let v = try parseList(boxColumns)
            guard v.count == 4 else { throw ValidationError("--box-columns takes four columns: X0,Y0,X1,Y1") }
            c.box = v
        }
        if c.centreX != nil && c.box != nil { throw ValidationError("give --centre-columns or --box-columns, not both") }
        c.mask = maskColumn
        c.label = labelColumn
        if labelColumn != nil && maskColumn == nil { throw ValidationError("--label-column needs --mask-column") }
        return c
    }
}
