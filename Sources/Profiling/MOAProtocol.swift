import CytoCore

/// The normalizations the standard MOA protocol offers.
public enum MOANormalization: String, Sendable, CaseIterable {
    case standardize, robustize, tvn, none
}

/// Settings of the standard MOA protocol (`cytogan profile moa`).
public struct MOAOptions: Sendable {
    public var control = RowCondition(column: "Metadata_Compound", value: "DMSO")
    public var normalization: MOANormalization = .standardize
    /// Normalize each value of this column against its own controls; nil: globally.
    public var per: String? = "Metadata_Plate"
    public var aggregation: AggregationMethod = .mean
    public var distance: DistanceMetric = .cosine
    public var columns = TreatmentColumns()
    public var plateColumn = "Metadata_Plate"
    public var wellColumn = "Metadata_Well"
    /// The regularizer added to the controls' covariance eigenvalues by TVN.
    public var tvnEpsilon = 1.0
    /// When set, CORAL aligns each batch's controls to all controls after normalization, with
    /// this regularizer.
    public var coralLambda: Double? = nil
    /// How many nearest other-compound treatments each treatment lists.
    public var neighborCount = 5
    public init() {}
}

/// The outcome of the MOA protocol: the scores, the normalization, and what was left out.
public struct MOAReport: Sendable {
    public var score: MOAScore
    public var options: MOAOptions
    public var featuresIn: Int
    public var featuresUsed: Int
    public var featuresDropped: [DroppedFeature]
    public var wells: Int
    public var controlWells: Int
    public var unannotatedWells: Int

    /// One JSON object: the score's fields plus `features_dropped` and the settings.
    public var json: JSON {
        guard case .object(var o) = score.json else { return score.json }
        o["features_dropped"] = .array(featuresDropped.map { .string($0.name) })
        o["features_dropped_detail"] = .array(featuresDropped.map { $0.json })
        o["features_used"] = JSON(featuresUsed)
        o["features_in"] = JSON(featuresIn)
        o["wells"] = ["total": JSON(wells), "controls": JSON(controlWells), "unannotated": JSON(unannotatedWells),
                      "treated": JSON(wells - controlWells - unannotatedWells)]
        o["settings"] = [
            "control": .string(options.control.description), "normalize": .string(options.normalization.rawValue),
            "per": options.per.map { JSON.string($0) } ?? .null, "aggregate": .string(options.aggregation.rawValue),
            "distance": .string(options.distance.rawValue),
            "batch_column": options.columns.batch.map { JSON.string($0) } ?? .null,
            "tvn_epsilon": .double(options.tvnEpsilon),
            "coral_lambda": options.coralLambda.map { JSON.double($0) } ?? .null,
        ]
        return .object(o)
    }

    public var summaryText: String {
        var s = "\(wells) wells (\(controlWells) controls, \(unannotatedWells) without MOA), \(featuresUsed) of \(featuresIn) features"
        s += ", normalize \(options.normalization.rawValue)\(options.per.map { " per \($0)" } ?? " globally"), aggregate \(options.aggregation.rawValue)\n"
        if !featuresDropped.isEmpty {
            s += "dropped \(featuresDropped.count) features: " + featuresDropped.prefix(8).map { "\($0.name) (\($0.reason)\($0.group.map { " in \($0)" } ?? ""))" }.joined(separator: ", ")
            s += featuresDropped.count > 8 ? ", ...\n" : "\n"
        }
        s += score.summaryText
        if !score.nscbDropped.isEmpty {
            s += "dropped from NSCB (no same-MOA treatment outside their batches): "
            s += score.nscbDropped.map { "\(score.treatments[$0].compound) \(formatNumber(score.treatments[$0].concentration))" }.joined(separator: ", ") + "\n"
        }
        return s
    }
}

/// The standard protocol on a table of wells: check it (required columns, no duplicated
/// plate/well), normalize each plate (or `per` group) to its controls, optionally align batches
/// with CORAL, aggregate wells into treatments and score them.
public func runMOAProtocol(wells table: ProfileTable, options: MOAOptions) throws -> MOAReport {
    var required = [options.plateColumn, options.wellColumn, options.columns.compound, options.columns.concentration,
                    options.columns.moa, options.control.column]
    if let b = options.columns.batch { required.append(b) }
    if let p = options.per { required.append(p) }
    for c in required { _ = try table.metadataIndex(c) }
    let pi = try table.metadataIndex(options.plateColumn), wi = try table.metadataIndex(options.wellColumn)
    var seen: [[String]: Int] = [:]
    for r in 0..<table.count {
        let key = [table.metadata[r][pi], table.metadata[r][wi]]
        if let first = seen[key] {
            throw CytoError(.invalidInput, "well \(key[1]) of plate \(key[0]) appears twice (also on line \(first)); aggregate cells into wells first",
                            line: table.sourceLines[r], field: options.wellColumn)
        }
        seen[key] = table.sourceLines[r]
    }
    var normalized = table
    var dropped: [DroppedFeature] = []
    let method: NormalizationMethod?
    switch options.normalization {
    case .standardize: method = .standardize
    case .robustize: method = .robustize
    case .tvn: method = .tvn(epsilon: options.tvnEpsilon)
    case .none: method = nil
    }
    if let method {
        let r = try normalize(table, options: NormalizationOptions(method: method, control: options.control, groupColumn: options.per))
        normalized = r.table
        dropped = r.normalizer.droppedFeatures
    }
    if let lambda = options.coralLambda {
        guard let b = options.columns.batch else { throw CytoError(.invalidInput, "CORAL needs a batch column") }
        normalized = try normalize(normalized, options: NormalizationOptions(method: .coral(lambda: lambda), control: options.control, groupColumn: b)).table
    }
    let tp = try treatmentProfiles(from: normalized, columns: options.columns, control: options.control, aggregation: options.aggregation)
    let score = try scoreMOA(treatments: tp.treatments, profiles: tp.profiles, featureCount: normalized.featureCount,
                             distance: options.distance, useBatches: options.columns.batch != nil,
                             neighborCount: options.neighborCount)
    return MOAReport(score: score, options: options, featuresIn: table.featureCount, featuresUsed: normalized.featureCount,
                     featuresDropped: dropped, wells: table.count, controlWells: tp.controlRows, unannotatedWells: tp.unannotatedRows)
}
