/// Mean, population standard deviation and maximum of a run of floats, accumulated in Double.
/// The per-channel intensity measurements and the discriminator's pooled features share them.
public enum PlaneStatistics {
    /// Mean and maximum in one pass (mean 0 and maximum -infinity for an empty run).
    public static func meanAndMax(_ p: UnsafePointer<Float>, count n: Int) -> (mean: Double, max: Double) {
        var sum = 0.0, mx = -Double.infinity
        for i in 0..<n { let v = Double(p[i]); sum += v; if v > mx { mx = v } }
        return (n > 0 ? sum / Double(n) : 0, mx)
    }

    /// Population standard deviation about `mean` (0 for an empty run).
    public static func standardDeviation(_ p: UnsafePointer<Float>, count n: Int, mean: Double) -> Double {
        guard n > 0 else { return 0 }
        var ss = 0.0
        for i in 0..<n { let d = Double(p[i]) - mean; ss += d * d }
        return (ss / Double(n)).squareRoot()
    }
}
