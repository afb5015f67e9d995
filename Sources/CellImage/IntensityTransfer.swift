import CytoCore

/// How a normalized value becomes the model's value: with u = (v + 1) / 2 the position in the
/// normalization's range, the model sees 2 t(u) - 1. Linear keeps u; the square root spreads the
/// dark end and narrows the bright one, so the camera's noise (whose variance grows with the
/// signal) has about the same size everywhere, as Anscombe's transform does for counts.
public enum IntensityTransfer: Sendable, Equatable {
    /// t(u) = u.
    case linear
    /// t(u) = (sqrt(u + offset) - sqrt(offset)) / (sqrt(1 + offset) - sqrt(offset)): 0 and 1 stay
    /// put; the slope at 0 is 1 / (2 sqrt(offset)) over the denominator. The offset is the read
    /// noise's variance over the shot noise's gain in range units (about 0.04 for BBBC021).
    case squareRoot(offset: Float)

    public var json: JSON {
        switch self {
        case .linear: return ["kind": "linear"]
        case .squareRoot(let c): return ["kind": "square_root", "offset": .float(c)]
        }
    }

    /// Parses the `json` form; errors name the offending field.
    public init(json: JSON) throws {
        func bad(_ field: String, _ m: String) -> CytoError { CytoError(.invalidInput, m, field: field) }
        guard case .object(let o) = json else { throw bad("transfer", "transfer must be an object, got \(json.typeName)") }
        guard let kind = o["kind"]?.stringValue else { throw bad("kind", "transfer needs a string 'kind' (linear, square_root)") }
        switch kind {
        case "linear": self = .linear
        case "square_root":
            guard let c = o["offset"]?.doubleValue, c.isFinite, Float(c) > 0, c <= 100 else {
                throw bad("offset", "a square_root transfer needs a number 'offset' in (0, 100]")
            }
            self = .squareRoot(offset: Float(c))
        default: throw bad("kind", "unknown transfer '\(kind)' (linear, square_root)")
        }
    }

    /// Maps normalized values in [-1, 1] to the model's, in place.
    public func apply(_ p: UnsafeMutablePointer<Float>, count: Int) {
        guard case .squareRoot(let c) = self else { return }
        let r0 = c.squareRoot(), scale = 2 / ((1 + c).squareRoot() - r0)
        for i in 0..<count {
            let u = min(max((p[i] + 1) / 2, 0), 1)
            p[i] = ((u + c).squareRoot() - r0) * scale - 1
        }
    }

    /// The inverse of `apply`: the model's values in [-1, 1] back to normalized ones, in place
    /// (values outside [-1, 1] are clipped first).
    public func invert(_ p: UnsafeMutablePointer<Float>, count: Int) {
        guard case .squareRoot(let c) = self else { return }
        let r0 = c.squareRoot(), span = (1 + c).squareRoot() - r0
        for i in 0..<count {
            let t = min(max((p[i] + 1) / 2, 0), 1) * span + r0
            p[i] = min(max(t * t - c, 0), 1) * 2 - 1
        }
    }
}
