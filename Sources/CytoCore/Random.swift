#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A seeded xoshiro256** generator whose whole state is four words, so it can be stored in a
/// checkpoint and resumed exactly. Each purpose (init, noise, label smoothing, data order,
/// augmentation) gets its own stream, so drawing from one never shifts another.
public struct RandomStream: RandomNumberGenerator, Sendable, Equatable {
    public private(set) var state: (UInt64, UInt64, UInt64, UInt64)

    /// A stream derived from a seed and a purpose name: streams of different purposes are
    /// independent for the same seed.
    public init(seed: UInt64, purpose: String = "") {
        var h: UInt64 = 0xcbf29ce484222325  // FNV-1a of the purpose name
        for b in purpose.utf8 { h = (h ^ UInt64(b)) &* 0x100000001b3 }
        var sm = seed ^ h
        func splitmix() -> UInt64 {
            sm &+= 0x9E3779B97F4A7C15
            var z = sm
            z = (z ^ (z >> 30)) &* 0xBF58476D1CE4E5B9
            z = (z ^ (z >> 27)) &* 0x94D049BB133111EB
            return z ^ (z >> 31)
        }
        state = (splitmix(), splitmix(), splitmix(), splitmix())
    }

    /// Restores a stream from `words` (as returned by `stateWords`).
    public init(stateWords w: [UInt64]) {
        precondition(w.count == 4)
        state = (w[0], w[1], w[2], w[3])
    }

    public var stateWords: [UInt64] { [state.0, state.1, state.2, state.3] }

    public static func == (a: RandomStream, b: RandomStream) -> Bool { a.stateWords == b.stateWords }

    @inline(__always)
    public mutating func next() -> UInt64 {
        let result = ((state.1 &* 5) << 7 | (state.1 &* 5) >> 57) &* 9
        let t = state.1 << 17
        state.2 ^= state.0
        state.3 ^= state.1
        state.1 ^= state.2
        state.0 ^= state.3
        state.2 ^= t
        state.3 = state.3 << 45 | state.3 >> 19
        return result
    }

    /// Uniform in [0, 1) with 24 random bits.
    @inline(__always)
    public mutating func uniformFloat() -> Float { Float(next() >> 40) * (1.0 / 16_777_216.0) }

    /// Uniform in [0, 1) with 53 random bits.
    @inline(__always)
    public mutating func uniformDouble() -> Double { Double(next() >> 11) * (1.0 / 9_007_199_254_740_992.0) }

    /// Uniform in [a, b).
    public mutating func uniform(_ a: Float, _ b: Float) -> Float { a + (b - a) * uniformFloat() }

    /// One standard normal value (Box-Muller; one of the pair is discarded).
    public mutating func normal() -> Float {
        let u1 = 1.0 - uniformDouble(), u2 = uniformDouble()
        return Float((-2.0 * log(u1)).squareRoot() * cos(2.0 * Double.pi * u2))
    }

    /// Fills `buffer` with N(mean, std^2) values, using both values of each Box-Muller pair.
    public mutating func fillNormal(_ buffer: UnsafeMutableBufferPointer<Float>, mean: Float = 0, std: Float = 1) {
        var i = 0
        let n = buffer.count
        while i < n {
            let u1 = 1.0 - uniformDouble(), u2 = uniformDouble()
            let r = (-2.0 * log(u1)).squareRoot(), a = 2.0 * Double.pi * u2
            buffer[i] = mean + std * Float(r * cos(a))
            if i + 1 < n { buffer[i + 1] = mean + std * Float(r * sin(a)) }
            i += 2
        }
    }

    public mutating func fillNormal(_ array: inout [Float], mean: Float = 0, std: Float = 1) {
        array.withUnsafeMutableBufferPointer { fillNormal($0, mean: mean, std: std) }
    }

    /// A uniform integer in 0..<n without modulo bias.
    public mutating func below(_ n: Int) -> Int {
        precondition(n > 0)
        return Int(next(upperBound: UInt64(n)))
    }

    /// Fisher-Yates shuffle driven by this stream (same seed, same order, on every platform).
    public mutating func shuffle<T>(_ a: inout [T]) {
        guard a.count > 1 else { return }
        for i in stride(from: a.count - 1, to: 0, by: -1) {
            let j = below(i + 1)
            if i != j { a.swapAt(i, j) }
        }
    }
}
