import CBLAS
import CytoCore

/// Double-precision helpers for the statistics of profiles (and CytoGAN's realism measure):
/// column means and spreads, covariance through BLAS, and symmetric eigendecomposition through
/// LAPACK's dsyevd.
public enum LinearAlgebra {
    /// Eigenvalues (ascending) and eigenvectors of the symmetric n x n matrix `a` (row-major; only
    /// symmetry matters). `vectors[k * n + i]` is component i of eigenvector k.
    public static func symmetricEigen(_ a: [Double], n: Int) throws -> (values: [Double], vectors: [Double]) {
        precondition(a.count == n * n)
        if n == 0 { return ([], []) }
        var m = a
        var w = [Double](repeating: 0, count: n)
        var jobz = Int8(UInt8(ascii: "V")), uplo = Int8(UInt8(ascii: "L"))
        var nn = Int32(n), lda = Int32(n), info: Int32 = 0
        // Workspace query first, then the real call.
        var lwork: Int32 = -1, liwork: Int32 = -1
        var wq: Double = 0
        var iwq: Int32 = 0
        dsyevd_(&jobz, &uplo, &nn, &m, &lda, &w, &wq, &lwork, &iwq, &liwork, &info)
        guard info == 0 else { throw CytoError(.internal, "dsyevd workspace query failed (info \(info))") }
        lwork = Int32(wq); liwork = iwq
        var work = [Double](repeating: 0, count: Int(lwork))
        var iwork = [Int32](repeating: 0, count: Int(liwork))
        dsyevd_(&jobz, &uplo, &nn, &m, &lda, &w, &work, &lwork, &iwork, &liwork, &info)
        guard info == 0 else {
            throw CytoError(.internal, "symmetric eigendecomposition did not converge (dsyevd info \(info))")
        }
        // Column-major: column k (eigenvector k) is m[k*n ..< (k+1)*n], i.e. row k read row-major.
        return (w, m)
    }

    /// U f(Λ) Uᵀ for a symmetric matrix given by its eigendecomposition.
    public static func spectralFunction(values: [Double], vectors: [Double], n: Int, _ f: (Double) -> Double) -> [Double] {
        spectralProduct(scales: values.map(f), vectors: vectors, n: n)
    }

    /// Σ_k scales[k] u_k u_kᵀ: U diag(scales) Uᵀ, with `vectors` as `symmetricEigen` returns them.
    public static func spectralProduct(scales: [Double], vectors: [Double], n: Int) -> [Double] {
        var scaled = vectors
        for k in 0..<n {
            for i in 0..<n { scaled[k * n + i] *= scales[k] }
        }
        var out = [Double](repeating: 0, count: n * n)
        if n > 0 {
            // (Vᵀ S)[i][j] = Σ_k u_k[i] scales[k] u_k[j], V's rows being the eigenvectors.
            cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Int32(n), Int32(n), Int32(n),
                        1, vectors, Int32(n), scaled, Int32(n), 0, &out, Int32(n))
        }
        return out
    }

    /// Sample covariance (divided by n - 1) of the rows of the row-major n x d matrix `x`
    /// around `mean`; n must be at least 2.
    public static func covariance(_ x: [Double], rows n: Int, columns d: Int, mean: [Double]) -> [Double] {
        var c = x
        for r in 0..<n { for j in 0..<d { c[r * d + j] -= mean[j] } }
        var cov = [Double](repeating: 0, count: d * d)
        if n > 0 && d > 0 {
            cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, Int32(d), Int32(n),
                        1 / Double(max(n - 1, 1)), c, Int32(d), 0, &cov, Int32(d))
        }
        for i in 0..<d { for j in 0..<i { cov[i * d + j] = cov[j * d + i] } }
        return cov
    }

    /// Column means of a row-major n x d matrix.
    public static func columnMeans(_ x: [Double], rows n: Int, columns d: Int) -> [Double] {
        var m = [Double](repeating: 0, count: d)
        for r in 0..<n { for j in 0..<d { m[j] += x[r * d + j] } }
        if n > 0 { for j in 0..<d { m[j] /= Double(n) } }
        return m
    }

    /// Column standard deviations around `mean`, dividing by n - ddof.
    public static func columnStd(_ x: [Double], rows n: Int, columns d: Int, mean: [Double], ddof: Int) -> [Double] {
        var s = [Double](repeating: 0, count: d)
        for r in 0..<n { for j in 0..<d { let e = x[r * d + j] - mean[j]; s[j] += e * e } }
        for j in 0..<d { s[j] = (s[j] / Double(n - ddof)).squareRoot() }
        return s
    }

    /// Whether each column of the n x d matrix is constant (all values equal, exactly).
    static func constantColumns(_ x: [Double], rows n: Int, columns d: Int) -> [Bool] {
        (0..<d).map { j in
            guard n > 0 else { return true }
            let v = x[j]
            for r in 1..<max(n, 1) where x[r * d + j] != v { return false }
            return true
        }
    }

    /// Median of `v` (mean of the two middle values for an even count), as NumPy and pandas.
    static func median(_ v: inout [Double]) -> Double {
        precondition(!v.isEmpty)
        v.sort()
        let n = v.count
        return n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2
    }

    /// Column medians of a row-major n x d matrix.
    static func columnMedians(_ x: [Double], rows n: Int, columns d: Int) -> [Double] {
        var col = [Double](repeating: 0, count: n)
        return (0..<d).map { j in
            for r in 0..<n { col[r] = x[r * d + j] }
            return median(&col)
        }
    }
}
