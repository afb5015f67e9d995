import CellImage
import CytoCore
import Foundation

/// Crops sampled for a dataset scale: enough for stable high percentiles, read in about a second.
public let datasetScaleSample = 512

/// Per-channel dataset-level intensity scale: the `percentile` of the raw intensities of up to
/// `sample` crops spread evenly over `source` (crops that cannot be read are skipped). Unlike the
/// per-crop maximum it keeps absolute intensity, which separates many treatments.
/// With `floor`, the range starts at that percentile instead of 0 (a `fixedRange`): the camera's
/// dark level and the empty background map to -1, where a generator's tanh draws them readily.
public func estimateDatasetScale(_ source: CropSource, preprocessing: Preprocessing, percentile: Double, floor: Double? = nil,
                                 sample: Int = datasetScaleSample) throws -> Normalization {
    guard source.count > 0 else { throw CytoError(.invalidInput, "no crops to estimate the dataset scale from") }
    let loader = CropLoader(preprocessing: preprocessing)
    let estimator = NormalizationEstimator(channels: preprocessing.channels)
    let n = min(sample, source.count)
    var firstError: Error?
    for k in 0..<n {
        let i = k * source.count / n
        do { try estimator.add(try loader.raw(try source.spec(at: i))) } catch { if firstError == nil { firstError = error } }
    }
    do {
        if let floor { return try estimator.fixedRange(low: floor, high: percentile) }
        return try estimator.fixedScale(percentile: percentile)
    } catch {
        throw firstError ?? error
    }
}

extension GANModel {
    /// Estimates the dataset scale the configuration asks for (`datasetScalePercentile`) from
    /// `source` and makes it the model's normalization. Does nothing when none is asked for or it
    /// is already estimated; an error after training has begun (the weights learned another input).
    public func resolveDatasetScale(from source: CropSource, log: (String) -> Void = { _ in }) throws {
        guard config.needsDatasetScale, let p = config.datasetScalePercentile else { return }
        guard step == 0 else {
            throw CytoError(.invalidInput, "the model has trained \(step) step(s) without its dataset scale; it cannot be estimated now", field: "normalization")
        }
        let scale = try estimateDatasetScale(source, preprocessing: config.preprocessing, percentile: p, floor: config.datasetFloorPercentile)
        config.preprocessing.normalization = scale
        func text(_ v: [Float]) -> String { v.map { String(format: "%.6g", $0) }.joined(separator: ", ") }
        switch scale {
        case .fixedScale(let s): log("dataset scale (percentile \(p) of up to \(datasetScaleSample) crops): " + text(s))
        case .fixedRange(let lo, let hi):
            log("dataset range (percentiles \(config.datasetFloorPercentile ?? 0) to \(p) of up to \(datasetScaleSample) crops): \(text(lo)) to \(text(hi))")
        default: break
        }
    }
}
