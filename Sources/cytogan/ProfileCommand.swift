import ArgumentParser
import CytoCore
import CytoNN
import Foundation
import Profiling

/// `cytogan profile`: feature tables to treatment profiles and MOA scores (aggregate, normalize,
/// score, the whole standard protocol as `moa`, and `evaluate-crops` for single-cell features).
struct ProfileCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "profile",
        abstract: "Aggregate, normalize and score feature tables (MOA accuracy: NSC, NSCB, per-compound, mAP).",
        discussion: """
        Feature tables are CSV files (Metadata_* columns and the key columns ImageNumber, \
        ObjectNumber and Location_*, then numeric features; .gz is read \
        transparently) or .npy matrices with a metadata CSV beside them (X.npy + X.metadata.csv, \
        or --meta). JSON results go to stdout, a readable summary to stderr.
        """,
        subcommands: [ProfileAggregate.self, ProfileNormalize.self, ProfileScore.self, ProfileMOA.self, ProfileEvaluateCrops.self])
}

/// Options shared by the commands that read a feature table.
struct TableInputOptions: ParsableArguments {
    @Option(name: .customLong("meta"), help: "Metadata CSV of a .npy matrix (default: X.metadata.csv beside X.npy).")
    var meta: String?
    @Option(name: .customLong("metadata-column"), help: "Treat this column as metadata although it is not Metadata_*, ImageNumber, ObjectNumber or Location_* (repeatable).")
    var metadataColumns: [String] = []
    @Option(name: .customLong("on-nonfinite"), help: "Empty, NaN or infinite feature values: an error, or drop the row (dropped rows are reported).")
    var onNonFinite: NonFinitePolicy = .error
    @Option(help: "Threads for the linear algebra (OpenBLAS; default: all cores).") var threads: Int?

    /// Sets OpenBLAS's thread count: these commands call it directly, outside the engine's pool.
    func applyThreads() throws {
        if let threads, threads < 1 { throw ValidationError("--threads must be at least 1") }
        Engine.setBLASThreads(threads ?? ProcessInfo.processInfo.activeProcessorCount)
    }

    func readOptions() throws -> FeatureReadOptions {
        FeatureReadOptions(extraMetadataColumns: Set(metadataColumns), metadataPath: meta, nonFinite: onNonFinite)
    }
}

func parseControl(_ text: String) throws -> RowCondition? {
    text == "all" ? nil : try RowCondition(parsing: text)
}

func parseColumnOrNone(_ text: String) -> String? {
    text.lowercased() == "none" ? nil : text
}

func emit(_ json: JSON, summary: String) {
    FileHandle.standardError.write(Data(summary.utf8))
    print(json.serialized)
}

func droppedRowsJSON(_ r: FeatureRowReader) -> JSON {
    [
        "count": JSON(r.droppedRowCount),
        "rows": .array(r.droppedRows.prefix(100).map { ["line": JSON($0.line), "field": .string($0.field), "value": .string($0.value)] }),
    ]
}

struct ProfileAggregate: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "aggregate",
        abstract: "Aggregate rows (cells) by strata columns into one profile per group, streaming.",
        discussion: "The output holds the strata, Metadata_Count, every other metadata column constant within each group (or joined with ';' if listed in --join), and the aggregated features. Mean streams with one running sum per group; median keeps each group's rows.")

    @Option(help: "Feature table to read (.csv, .csv.gz or .npy).") var input: String
    @Option(help: "Where to write the aggregated table (.csv or .npy).") var output: String
    @Option(name: .customLong("by"), parsing: .upToNextOption, help: "Strata columns (for example Metadata_Plate Metadata_Well).")
    var by: [String]
    @Option(help: "How a group's rows are combined.") var method: AggregationMethod = .mean
    @Option(name: .customLong("join"), help: "A metadata column whose distinct values in a group are kept, joined with ';' (repeatable).")
    var join: [String] = []
    @OptionGroup var table: TableInputOptions

    func run() throws {
        try table.applyThreads()
        let strata = by.flatMap { $0.split(separator: ",").map(String.init) }
        let reader = try FeatureRowReader(path: input, options: try table.readOptions())
        let acc = try GroupAccumulator(strata: strata, metadataColumns: reader.metadataColumns, featureNames: reader.featureNames,
                                       method: method, joinColumns: Set(join))
        var buf = [Double](repeating: 0, count: reader.featureNames.count)
        var rows = 0
        while let got = try buf.withUnsafeMutableBufferPointer({ try reader.next(into: $0) }) {
            buf.withUnsafeBufferPointer { acc.add(metadata: got.metadata, features: $0) }
            rows += 1
        }
        let (out, droppedColumns) = acc.finish()
        try FeatureRowWriter.write(out, to: output)
        var s = "aggregated \(rows) rows into \(out.count) groups by \(strata.joined(separator: ", ")) (\(method.rawValue)) -> \(output)\n"
        if !droppedColumns.isEmpty { s += "dropped metadata columns that vary within groups: \(droppedColumns.joined(separator: ", "))\n" }
        if reader.droppedRowCount > 0 { s += "dropped \(reader.droppedRowCount) rows with missing or non-finite values\n" }
        emit(["rows": JSON(rows), "groups": JSON(out.count), "output": .string(output), "method": .string(method.rawValue),
              "strata": .array(strata.map { .string($0) }), "metadata_columns_dropped": .array(droppedColumns.map { .string($0) }),
              "rows_dropped": droppedRowsJSON(reader)], summary: s)
    }
}

struct ProfileNormalize: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "normalize",
        abstract: "Normalize a feature table against control rows, per group or globally, streaming in two passes.",
        discussion: """
        Methods: standardize (z-score, sample std), robustize (median, 1.4826 * MAD; pycytominer's \
        mad_robustize), spherize (pycytominer's Spherize: --spherize-method ZCA|PCA|ZCA-cor|PCA-cor, \
        --epsilon added to singular values), tvn (standardize per group, then whiten with all \
        controls' covariance + epsilon I), coral (per --per group, usually the batch: align the \
        group's control covariance to all controls', --lambda regularizer). Features with no \
        spread among some group's controls are dropped and reported.
        """)

    @Option(help: "Feature table to read (.csv, .csv.gz or .npy).") var input: String
    @Option(help: "Where to write the normalized table (.csv or .npy).") var output: String
    @Option(help: "The normalization (robustize is also accepted as mad_robustize).") var method: NormalizeMethodOption = .standardize
    @Option(help: "Control rows COLUMN=VALUE, or 'all' for every row.") var control: String = "Metadata_Compound=DMSO"
    @Option(help: "Normalize each value of this column against its own controls, or 'none' for globally.") var per: String = "Metadata_Plate"
    @Option(name: .customLong("spherize-method"), help: "The whitening of spherize.") var spherizeMethod: SpherizeMethod = .zca
    @Option(help: "Regularizer of spherize (default 1e-6) and tvn (default 1).") var epsilon: Double?
    @Flag(name: .customLong("no-center"), help: "spherize without centring (ZCA and PCA only).") var noCenter = false
    @Option(help: "CORAL regularizer added to the covariances.") var lambda: Double = 1
    @OptionGroup var table: TableInputOptions

    func normalizationOptions() throws -> NormalizationOptions {
        let m: NormalizationMethod
        switch method {
        case .standardize: m = .standardize
        case .robustize: m = .robustize
        case .spherize: m = .spherize(spherizeMethod, epsilon: epsilon ?? 1e-6, center: !noCenter)
        case .tvn: m = .tvn(epsilon: epsilon ?? 1)
        case .coral:
            guard lambda > 0 else { throw ValidationError("--lambda must be positive") }
            m = .coral(lambda: lambda)
        }
        if let e = epsilon, !(e >= 0) { throw ValidationError("--epsilon must be non-negative") }
        return NormalizationOptions(method: m, control: try parseControl(control), groupColumn: parseColumnOrNone(per))
    }

    func run() throws {
        try table.applyThreads()
        let opts = try normalizationOptions()
        let readOpts = try table.readOptions()
        // Pass 1: keep the control rows, note every row's group.
        let first = try FeatureRowReader(path: input, options: readOpts)
        var controls = ProfileTable(metadataColumns: first.metadataColumns, featureNames: first.featureNames)
        let ci = try opts.control.map { c -> Int in
            guard let i = first.metadataColumns.firstIndex(of: c.column) else {
                throw CytoError(.invalidInput, "missing control column '\(c.column)'", path: input, field: c.column)
            }
            return i
        }
        let gi = try opts.groupColumn.map { g -> Int in
            guard let i = first.metadataColumns.firstIndex(of: g) else {
                throw CytoError(.invalidInput, "missing column '\(g)' given by --per", path: input, field: g)
            }
            return i
        }
        var groups: [String] = []
        var seenGroups = Set<String>()
        var buf = [Double](repeating: 0, count: first.featureNames.count)
        var rows = 0
        while let got = try buf.withUnsafeMutableBufferPointer({ try first.next(into: $0) }) {
            rows += 1
            let g = gi.map { got.metadata[$0] } ?? ""
            if seenGroups.insert(g).inserted { groups.append(g) }
            if let ci, got.metadata[ci] != opts.control!.value { continue }
            buf.withUnsafeBufferPointer { controls.append(metadata: got.metadata, features: $0, line: got.line) }
        }
        let normalizer: Normalizer
        do {
            normalizer = try Normalizer.fit(controls: controls, options: opts, allGroups: groups)
        } catch var e as CytoError {
            if e.path == nil { e.path = input }
            throw e
        }
        // Pass 2: transform blocks of rows and stream them out.
        let second = try FeatureRowReader(path: input, options: readOpts)
        let writer = try FeatureRowWriter(path: output, metadataColumns: second.metadataColumns, featureNames: normalizer.outputFeatures)
        var block = ProfileTable(metadataColumns: second.metadataColumns, featureNames: second.featureNames)
        func flush() throws {
            guard block.count > 0 else { return }
            let out = try normalizer.transform(block)
            try out.features.withUnsafeBufferPointer { all in
                let d = out.featureCount
                for r in 0..<out.count {
                    try writer.write(metadata: out.metadata[r], features: UnsafeBufferPointer(rebasing: all[(r * d)..<((r + 1) * d)]))
                }
            }
            block = ProfileTable(metadataColumns: second.metadataColumns, featureNames: second.featureNames)
        }
        while let got = try buf.withUnsafeMutableBufferPointer({ try second.next(into: $0) }) {
            buf.withUnsafeBufferPointer { block.append(metadata: got.metadata, features: $0, line: got.line) }
            if block.count == 4096 { try flush() }
        }
        try flush()
        try writer.finish()
        guard case .object(var o) = normalizer.summary else { return }
        o["rows"] = JSON(rows); o["control_rows"] = JSON(controls.count); o["output"] = .string(output)
        o["rows_dropped"] = droppedRowsJSON(first)
        var s = "normalized \(rows) rows (\(controls.count) controls, \(groups.count) group(s)) with \(opts.method.name) -> \(output)\n"
        if !normalizer.droppedFeatures.isEmpty {
            s += "dropped \(normalizer.droppedFeatures.count) features: " + normalizer.droppedFeatures.prefix(10).map { "\($0.name) (\($0.reason)\($0.group.map { " in \($0)" } ?? ""))" }.joined(separator: ", ") + "\n"
        }
        emit(.object(o), summary: s)
    }
}

/// `profile normalize --method`; `mad_robustize` (pycytominer's name) is read as robustize.
enum NormalizeMethodOption: String, CaseIterable, ExpressibleByArgument {
    case standardize, robustize, spherize, tvn, coral

    init?(argument: String) { self.init(rawValue: argument == "mad_robustize" ? "robustize" : argument) }
}

/// Options shared by `score` and `moa`.
struct ScoringOptions: ParsableArguments {
    @Option(help: "Control rows COLUMN=VALUE (excluded from treatments).") var control: String = "Metadata_Compound=DMSO"
    @Option(help: "How rows of one treatment are combined.") var aggregate: AggregationMethod = .mean
    @Option(help: "The distance between treatment profiles.") var distance: DistanceMetric = .cosine
    @Option(name: .customLong("batch-column"), help: "Batch column for NSCB (';' separates several batches), or 'none'.")
    var batchColumn: String = "Metadata_Batch"
    @Option(name: .customLong("compound-column")) var compoundColumn: String = "Metadata_Compound"
    @Option(name: .customLong("concentration-column")) var concentrationColumn: String = "Metadata_Concentration"
    @Option(name: .customLong("moa-column"), help: "MOA column; rows with an empty MOA are not scored.") var moaColumn: String = "Metadata_MOA"
    @Option(help: "How many nearest other-compound treatments to list per treatment.") var neighbors: Int = 5

    var columns: TreatmentColumns {
        TreatmentColumns(compound: compoundColumn, concentration: concentrationColumn, moa: moaColumn, batch: parseColumnOrNone(batchColumn))
    }
}

struct ProfileScore: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "score",
        abstract: "Score profiles by MOA: NSC, NSCB, per-compound accuracy, mAP, confusion matrix, neighbours.",
        discussion: "Rows (already normalized) with the same compound and concentration are aggregated into one treatment; controls and rows without a MOA are left out. Ties go to the treatment first in (compound, concentration) order.")

    @Option(help: "Profiles to score (.csv or .npy).") var profiles: String
    @OptionGroup var scoring: ScoringOptions
    @OptionGroup var table: TableInputOptions

    func run() throws {
        try table.applyThreads()
        let t = try FeatureRowReader.readTable(path: profiles, options: try table.readOptions())
        let tp = try withPath(profiles) {
            try treatmentProfiles(from: t.table, columns: scoring.columns, control: try parseControl(scoring.control),
                                  aggregation: scoring.aggregate)
        }
        let score = try withPath(profiles) {
            try scoreMOA(treatments: tp.treatments, profiles: tp.profiles, featureCount: tp.featureNames.count,
                         distance: scoring.distance, useBatches: scoring.columns.batch != nil,
                         neighborCount: scoring.neighbors)
        }
        guard case .object(var o) = score.json else { return }
        o["rows_dropped"] = droppedRowsJSON(t.reader)
        o["features_used"] = JSON(tp.featureNames.count)
        emit(.object(o), summary: score.summaryText)
    }
}

struct ProfileMOA: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "moa",
        abstract: "The standard MOA protocol on a table of wells: normalize per plate to controls, aggregate treatments, score.",
        discussion: """
        WELLS.csv has Metadata_Plate, Metadata_Well, Metadata_Compound, Metadata_Concentration, \
        Metadata_MOA (empty for controls and unannotated wells), Metadata_Batch; every other column \
        is a numeric feature. Prints one JSON object (nsc, nscb, per_compound, map, treatments, \
        nscb_dropped, features_dropped, confusion, ...) on stdout and a summary on stderr. \
        A duplicated plate/well, a plate without controls, a missing column or a bad value is an error.
        """)

    @Option(help: "The wells table (.csv, .csv.gz, or .npy with --meta).") var wells: String
    @Option(help: "The normalization to each plate's controls (or none).") var normalize: MOANormalization = .standardize
    @Option(help: "Normalize each value of this column against its controls, or 'none' for globally.") var per: String = "Metadata_Plate"
    @Option(name: .customLong("tvn-epsilon"), help: "TVN regularizer added to the control covariance's eigenvalues.") var tvnEpsilon: Double = 1
    @Option(help: "Also align batches with CORAL after normalization, with this regularizer (off by default).") var coral: Double?
    @OptionGroup var scoring: ScoringOptions
    @OptionGroup var table: TableInputOptions

    func run() throws {
        try table.applyThreads()
        var o = MOAOptions()
        guard let c = try parseControl(scoring.control) else { throw ValidationError("moa needs a control condition COLUMN=VALUE") }
        o.control = c
        o.normalization = normalize
        o.per = parseColumnOrNone(per)
        o.aggregation = scoring.aggregate
        o.distance = scoring.distance
        o.columns = scoring.columns
        guard tvnEpsilon >= 0 else { throw ValidationError("--tvn-epsilon must be non-negative") }
        o.tvnEpsilon = tvnEpsilon
        if let coral, !(coral > 0) { throw ValidationError("--coral must be positive") }
        o.coralLambda = coral
        o.neighborCount = scoring.neighbors
        let t = try FeatureRowReader.readTable(path: wells, options: try table.readOptions())
        let report = try withPath(wells) { try runMOAProtocol(wells: t.table, options: o) }
        guard case .object(var j) = report.json else { return }
        j["rows_dropped"] = droppedRowsJSON(t.reader)
        var s = report.summaryText
        if t.reader.droppedRowCount > 0 { s += "dropped \(t.reader.droppedRowCount) wells with missing or non-finite values\n" }
        emit(.object(j), summary: s)
    }
}

struct ProfileEvaluateCrops: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "evaluate-crops",
        abstract: "How much biology single-cell crop features carry: (a) logistic regression, (b) well nearest neighbour, (c) dose response.",
        discussion: """
        (a) leave-one-plate-out balanced accuracy of an L2 logistic regression on single cells, \
        treated vs control, features z-scored to each plate's control cells; (b) leave-one-plate-out \
        cosine nearest-neighbour accuracy of per-well mean profiles (features z-scored to all \
        control cells), label = compound and concentration (also treated vs control); (c) each \
        treated well's distance to its plate's control centre against the dose (Spearman, share of \
        increasing pairs). Needs Metadata_Plate, Metadata_Well, Metadata_Compound, Metadata_Concentration.
        """)

    @Option(help: "Crop features (.csv or .npy).") var features: String
    @Option(help: "Control rows COLUMN=VALUE.") var control: String = "Metadata_Compound=DMSO"
    @Option(name: .customLong("C"), help: "Inverse L2 regularization strength (scikit-learn's C).") var C: Double = 1
    @Option(name: .customLong("class-weight"), help: "Class weights of the logistic regression.") var classWeight: ClassWeightOption = .balanced
    @Option(name: .customLong("plate-column")) var plateColumn: String = "Metadata_Plate"
    @Option(name: .customLong("well-column")) var wellColumn: String = "Metadata_Well"
    @OptionGroup var table: TableInputOptions

    func run() throws {
        try table.applyThreads()
        var o = CropEvaluationOptions()
        guard let c = try parseControl(control) else { throw ValidationError("evaluate-crops needs a control condition COLUMN=VALUE") }
        o.control = c
        guard C > 0 else { throw ValidationError("--C must be positive") }
        o.C = C
        o.balancedClassWeights = classWeight == .balanced
        o.plateColumn = plateColumn
        o.wellColumn = wellColumn
        let t = try FeatureRowReader.readTable(path: features, options: try table.readOptions())
        let e = try withPath(features) { try evaluateCrops(t.table, options: o) }
        guard case .object(var j) = e.json else { return }
        j["rows_dropped"] = droppedRowsJSON(t.reader)
        emit(.object(j), summary: e.summaryText)
    }
}

/// `profile evaluate-crops --class-weight`.
enum ClassWeightOption: String, CaseIterable, ExpressibleByArgument {
    case balanced, none
}

/// Runs `body`, naming `path` in a CytoError that names no file (the in-memory library does not
/// know where its table came from).
func withPath<T>(_ path: String, _ body: () throws -> T) throws -> T {
    do { return try body() } catch var e as CytoError {
        if e.path == nil { e.path = path }
        throw e
    }
}
