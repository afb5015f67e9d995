/// The symmetries of the square applied to CHW crops: `turns` quarter turns counter-clockwise
/// after an optional left-right mirror: the trainer's flips and rotations and the views of
/// `@dihedral` features.
public struct SquareSymmetry: Sendable, Equatable {
    public var mirror: Bool
    public var turns: Int

    public init(mirror: Bool = false, turns: Int = 0) { self.mirror = mirror; self.turns = turns & 3 }

    /// The 8 symmetries, numbered k = 0...7 (mirror for k >= 4, k mod 4 quarter turns).
    public init(index k: Int) { self.init(mirror: k >= 4, turns: k & 3) }

    /// Where output pixel (y, x) of an n x n plane reads from.
    @inline(__always)
    public func source(_ y: Int, _ x: Int, _ n: Int) -> (Int, Int) {
        // Undo the turns (counter-clockwise: out(y, x) = in(x, n-1-y) for one turn), then the mirror.
        var sy = y, sx = x
        for _ in 0..<turns { (sy, sx) = (sx, n - 1 - sy) }
        if mirror { sx = n - 1 - sx }
        return (sy, sx)
    }

    /// Applies the symmetry to `channels` planes of `size` x `size` in place (`scratch` >= size^2).
    public func apply(_ planes: UnsafeMutablePointer<Float>, channels: Int, size n: Int, scratch: UnsafeMutablePointer<Float>) {
        if !mirror && turns == 0 { return }
        for c in 0..<channels {
            let p = planes + c * n * n
            scratch.update(from: p, count: n * n)
            for y in 0..<n {
                for x in 0..<n {
                    let (sy, sx) = source(y, x, n)
                    p[y * n + x] = scratch[sy * n + sx]
                }
            }
        }
    }
}
