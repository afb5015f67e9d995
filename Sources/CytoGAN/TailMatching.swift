import CytoNN

/// A generator loss term that matches how bright each generated cell's brightest pixels are to
/// the real batch's: per channel, the mean of each cell's brightest `share` of pixels, sorted over
/// the batch, generated against real rank by rank; weight * mean over ranks of the squared
/// difference, summed over channels (a one-dimensional Wasserstein-2 distance between the two
/// batches' distributions of that mean). A short training otherwise draws too few of the rare
/// bright cells (condensed and dividing nuclei, bright tubulin and actin rims). Its gradient goes
/// to the selected pixels only, each 1/m of its cell's share.
public final class TailMatching {
    public let weight: Float
    /// Share of each cell's pixels, per channel, whose mean is matched (1%: 41 of 64 x 64).
    public static let share = 0.01
    /// Real then generated means, [2][channels][global batch].
    private var tails: [Float] = []
    /// Each local generated plane's brightest pixels, [local batch][channels][m].
    private var selected: [Int32] = []
    private var heapValue: [Float] = [], heapIndex: [Int32] = []
    private var realOrder: [Int32] = [], fakeOrder: [Int32] = []

    public init(weight: Float) { self.weight = weight }

    /// The number of pixels whose mean is matched in a plane of `n`.
    public static func count(plane n: Int) -> Int { max(1, Int((share * Double(n)).rounded())) }

    /// Adds the term's gradient with respect to `fake` into `gradient`, and returns the term.
    /// Data-parallel (`collective` and this process's `slice` of the global batch): the means are
    /// gathered over the processes first, so every process matches the global batch's ranks.
    @discardableResult
    public func accumulate(fake: Tensor, real: Tensor, into gradient: Tensor,
                           collective: (any Collective)? = nil, slice: BatchSlice? = nil) throws -> Float {
        let b = fake.shape[0], c = fake.shape[1], n = fake.shape[2] * fake.shape[3]
        let global = slice?.global ?? b, offset = slice?.offset ?? 0
        let m = TailMatching.count(plane: n)
        if tails.count != 2 * c * global || selected.count != b * c * m {
            tails = [Float](repeating: 0, count: 2 * c * global)
            selected = [Int32](repeating: 0, count: b * c * m)
            realOrder = [Int32](repeating: 0, count: global)
            fakeOrder = realOrder
        }
        if heapValue.count != m { heapValue = [Float](repeating: 0, count: m); heapIndex = [Int32](repeating: 0, count: m) }
        for i in 0..<tails.count { tails[i] = 0 }
        for i in 0..<b {
            for ch in 0..<c {
                let plane = (i * c + ch) * n
                tails[ch * global + offset + i] = brightestMean(real.data + plane, n, m, into: nil)
                tails[(c + ch) * global + offset + i] = brightestMean(fake.data + plane, n, m, into: (i * c + ch) * m)
            }
        }
        if let collective, global != b {
            try tails.withUnsafeMutableBufferPointer { try collective.allreduceSum($0.baseAddress!, count: $0.count) }
        }
        var loss: Float = 0
        let g = gradient.data
        for ch in 0..<c {
            let r = ch * global, f = (c + ch) * global
            sortIndices(&realOrder, by: r)
            sortIndices(&fakeOrder, by: f)
            for k in 0..<global {
                let item = Int(fakeOrder[k])
                let d = tails[f + item] - tails[r + Int(realOrder[k])]
                loss += weight * d * d / Float(global)
                let local = item - offset
                guard local >= 0 && local < b else { continue }
                let each = 2 * weight * d / Float(global) / Float(m)
                let plane = (local * c + ch) * n, sel = (local * c + ch) * m
                for j in 0..<m { g[plane + Int(selected[sel + j])] += each }
            }
        }
        return loss
    }

    /// Mean of the `m` largest of `p[0..<n]` (a min-heap of the largest so far; ties keep the
    /// first); their indices go to `selected[at...]` when `at` is given.
    private func brightestMean(_ p: UnsafePointer<Float>, _ n: Int, _ m: Int, into at: Int?) -> Float {
        var count = 0
        for i in 0..<n {
            let v = p[i]
            if count < m {
                var k = count
                count += 1
                while k > 0 {
                    let parent = (k - 1) / 2
                    if heapValue[parent] <= v { break }
                    heapValue[k] = heapValue[parent]; heapIndex[k] = heapIndex[parent]
                    k = parent
                }
                heapValue[k] = v; heapIndex[k] = Int32(i)
            } else if v > heapValue[0] {
                var k = 0
                while true {
                    let l = 2 * k + 1
                    if l >= m { break }
                    let child = l + 1 < m && heapValue[l + 1] < heapValue[l] ? l + 1 : l
                    if heapValue[child] >= v { break }
                    heapValue[k] = heapValue[child]; heapIndex[k] = heapIndex[child]
                    k = child
                }
                heapValue[k] = v; heapIndex[k] = Int32(i)
            }
        }
        var s: Float = 0
        for j in 0..<m { s += heapValue[j] }
        if let at { for j in 0..<m { selected[at + j] = heapIndex[j] } }
        return s / Float(m)
    }

    /// `order` = 0..<count sorted by `tails[base + item]` (ties by item), by insertion: a batch
    /// is a few dozen items, and this allocates nothing.
    private func sortIndices(_ order: inout [Int32], by base: Int) {
        for i in 0..<order.count { order[i] = Int32(i) }
        for i in 1..<max(1, order.count) {
            let x = order[i], v = tails[base + Int(x)]
            var j = i - 1
            while j >= 0 && tails[base + Int(order[j])] > v {
                order[j + 1] = order[j]
                j -= 1
            }
            order[j + 1] = x
        }
    }
}
