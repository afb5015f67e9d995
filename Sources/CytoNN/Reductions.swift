/// Sums over contiguous runs of floats in 16 lanes at once: a plain running sum waits on each
/// addition before the next, and the compiler may not reorder float additions itself.

/// The sum of `p[0 ..< count]`.
@inline(__always)
func laneSum(_ p: UnsafePointer<Float>, _ count: Int) -> Float {
    var acc = SIMD16<Float>(repeating: 0)
    var j = 0
    while j + 16 <= count {
        acc += UnsafeRawPointer(p + j).loadUnaligned(as: SIMD16<Float>.self)
        j += 16
    }
    var t = acc.sum()
    while j < count { t += p[j]; j += 1 }
    return t
}

/// The sum of `(p[j] - center)^2` over `j < count`.
@inline(__always)
func laneSquaredDeviation(_ p: UnsafePointer<Float>, _ count: Int, from center: Float) -> Float {
    var acc = SIMD16<Float>(repeating: 0)
    let c = SIMD16<Float>(repeating: center)
    var j = 0
    while j + 16 <= count {
        let d = UnsafeRawPointer(p + j).loadUnaligned(as: SIMD16<Float>.self) - c
        acc += d * d
        j += 16
    }
    var t = acc.sum()
    while j < count { let d = p[j] - center; t += d * d; j += 1 }
    return t
}

/// The sums of `g[j]` and of `g[j] * (p[j] - center)` over `j < count`.
@inline(__always)
func laneSumAndMoment(_ g: UnsafePointer<Float>, _ p: UnsafePointer<Float>, _ count: Int, center: Float) -> (Float, Float) {
    var a = SIMD16<Float>(repeating: 0), b = SIMD16<Float>(repeating: 0)
    let c = SIMD16<Float>(repeating: center)
    var j = 0
    while j + 16 <= count {
        let gv = UnsafeRawPointer(g + j).loadUnaligned(as: SIMD16<Float>.self)
        let pv = UnsafeRawPointer(p + j).loadUnaligned(as: SIMD16<Float>.self)
        a += gv
        b += gv * (pv - c)
        j += 16
    }
    var s = a.sum(), t = b.sum()
    while j < count { s += g[j]; t += g[j] * (p[j] - center); j += 1 }
    return (s, t)
}
