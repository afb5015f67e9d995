import CytoCore
import Profiling

/// Profile tables (PROTOCOL.md §8.7): list, aggregate, normalize, score, export and drop the
/// worker's named tables or feature table files, over the Profiling module's in-process API
/// (the same code as `cytogan profile ...`, so both give the same numbers).
extension Server {
    /// The worker's profile tables, shared with `features/extract`.
    var profiles: ProfileStore { service(ProfileStore.self) { ProfileStore() } }

    func registerProfileMethods() {
        register("profiles/list", params: [], summary: "The profile tables the worker holds.",
                 execution: .inline, handler: listProfiles)

        register("profiles/drop", params: ["table"], summary: "Forget a profile table the worker holds.",
                 execution: .inline, handler: dropProfile)

        register("profiles/aggregate", params: ["source", "by", "method", "join", "into"],
                 summary: "One profile per group of rows (mean or median), into a table the worker holds.",
                 handler: aggregateProfiles)

        register("profiles/normalize",
                 params: ["source", "controls", "method", "by", "into", "epsilon", "lambda", "spherizeMethod"],
                 summary: "Normalize features to control rows (standardize, robustize, tvn, spherize, coral), into a table the worker holds.",
                 handler: normalizeProfiles)

        register("profiles/score",
                 params: ["source", "moa", "compound", "concentration", "batch", "exclude", "metrics", "confusion", "distance", "neighbors"],
                 summary: "MOA scores of profiles by leave-one-compound-out nearest neighbours: NSC, NSCB, per-compound accuracy, mAP, and each treatment's nearest neighbours.",
                 handler: scoreProfiles)

        register("profiles/export", params: ["source", "path", "format"],
                 summary: "Write a profile table to a CSV (metadata, then features) or a float32 .npy with its metadata CSV, atomically.",
                 handler: exportProfiles)
    }
}

/// The `profiles/list` handler (PROTOCOL.md §8.7).
private func listProfiles(_ req: Request) throws -> JSON {
    .object(["tables": .array(req.server.profiles.all.map { .object(tableInfo($0.name, $0.table)) })])
}

/// The `profiles/drop` handler (PROTOCOL.md §8.7).
private func dropProfile(_ req: Request) throws -> JSON {
    let name = try nonEmpty(req.params, "table")
    guard req.server.profiles.drop(name) else {
        _ = try req.server.profiles.table(name, field: "table")   // the error naming what exists
        throw CytoError(.invalidInput, "no table \(quoted(name))", field: "table")
    }
    return .object(["dropped": .string(name)])
}

/// The `profiles/aggregate` handler (PROTOCOL.md §8.7).
private func aggregateProfiles(_ req: Request) throws -> JSON {
    let p = req.params
    let source = try TableRef(p, "source")
    let by = try p.optionalStrings("by", count: 1...Int.max) ?? ["Metadata_Compound", "Metadata_Concentration"]
    let method = AggregationMethod(rawValue: try p.choice("method", AggregationMethod.allCases.map(\.rawValue), default: "mean"))!
    let join = try p.optionalStrings("join") ?? []
    let into = try optionalNonEmpty(p, "into") ?? "profiles"

    let table = try source.load(req.server.profiles, field: "source", cancellation: req.cancellation)
    for (i, c) in by.enumerated() { try requireColumn(table, c, field: "by[\(i)]", source: source) }
    for (i, c) in join.enumerated() { try requireColumn(table, c, field: "join[\(i)]", source: source) }
    let (out, dropped) = try source.located { try aggregate(table, by: by, method: method, joinColumns: Set(join)) }
    try req.checkCancelled()
    req.server.profiles.put(into, out)
    var info = tableInfo(into, out)
    info["metadataColumnsDropped"] = .array(dropped.map { .string($0) })
    return .object(info)
}

/// The `profiles/normalize` handler (PROTOCOL.md §8.7).
private func normalizeProfiles(_ req: Request) throws -> JSON {
    let p = req.params
    let source = try TableRef(p, "source")
    let controls = try ValueMatch(p, "controls")
    let methodName = try p.choice("method", ["standardize", "robustize", "tvn", "spherize", "coral"], default: "standardize")
    let by = try p.optionalStrings("by", count: 1...Int.max) ?? []
    let into = try optionalNonEmpty(p, "into") ?? "normalized"
    let method = try normalizationMethod(named: methodName, p, by: by)

    var table = try source.load(req.server.profiles, field: "source", cancellation: req.cancellation)
    try requireColumn(table, controls.column, field: "controls.column", source: source)
    for (i, c) in by.enumerated() { try requireColumn(table, c, field: "by[\(i)]", source: source) }
    let groupColumn = try combinedGroupColumn(of: by, in: &table)
    let isControl = try controls.matches(table)
    guard isControl.contains(true) else {
        throw CytoError(.invalidInput, "no control rows: no row has \(controls.column) = \(controls.text)",
                        path: source.path, field: "controls")
    }
    let options = NormalizationOptions(method: method, control: RowCondition(column: controls.column, value: controls.text),
                                       groupColumn: groupColumn)
    let normalizer: Normalizer
    var out: ProfileTable
    do {
        let groups = try groupColumn.map { try table.metadataValues($0) }
        normalizer = try Normalizer.fit(controls: table.rows(isControl.indices.filter { isControl[$0] }),
                                        options: options, allGroups: groups)
        try req.checkCancelled()
        out = try normalizer.transform(table)
    } catch var e as CytoError {
        // The library names columns; the client named parameters.
        if e.field != nil && e.field == groupColumn { e.field = "by" } else if e.field == nil || e.field == controls.column { e.field = "controls" }
        if e.path == nil { e.path = source.path }
        throw e
    }
    if by.count > 1 {
        out.metadataColumns.removeLast()
        for r in out.metadata.indices { out.metadata[r].removeLast() }
    }
    try req.checkCancelled()
    req.server.profiles.put(into, out)
    var info = tableInfo(into, out)
    info["controlRows"] = JSON(isControl.filter { $0 }.count)
    info["featuresDropped"] = .array(normalizer.droppedFeatures.map { $0.json })
    return .object(info)
}

/// The method `name` of `profiles/normalize` with its own parameters (epsilon, lambda,
/// spherizeMethod); a parameter of another method is refused, as is coral without `by`.
private func normalizationMethod(named name: String, _ p: Params, by: [String]) throws -> NormalizationMethod {
    for (key, users) in [("epsilon", ["tvn", "spherize"]), ("lambda", ["coral"]), ("spherizeMethod", ["spherize"])]
    where p.has(key) && !users.contains(name) {
        throw p.error(key, "applies to method \(users.joined(separator: " and ")) only, not \(name)")
    }
    let epsilon = try p.optionalNumber("epsilon", in: 0...Double.greatestFiniteMagnitude)
    let lambda = try p.number("lambda", default: 1, in: 0...Double.greatestFiniteMagnitude)
    guard lambda > 0 else { throw p.error("lambda", "must be above 0, not 0") }
    let spherize = SpherizeMethod(rawValue: try p.choice("spherizeMethod", SpherizeMethod.allCases.map(\.rawValue), default: "ZCA"))!
    switch name {
    case "robustize": return .robustize
    case "tvn": return .tvn(epsilon: epsilon ?? 1)
    case "spherize": return .spherize(spherize, epsilon: epsilon ?? 1e-6, center: true)
    case "coral":
        guard !by.isEmpty else { throw p.error("by", "is required by coral: the batch column(s) to align") }
        return .coral(lambda: lambda)
    default: return .standardize
    }
}

/// The column `profiles/normalize` groups by: the one `by` column, or with several, one group
/// per combination through a column of the joined values appended to `table` for the fit (the
/// caller removes it from the output).
private func combinedGroupColumn(of by: [String], in table: inout ProfileTable) throws -> String? {
    guard by.count > 1 else { return by.first }
    let name = by.joined(separator: " + ")
    let idx = try by.map { try table.metadataIndex($0) }
    table.metadataColumns.append(name)
    for r in table.metadata.indices { table.metadata[r].append(idx.map { table.metadata[r][$0] }.joined(separator: " / ")) }
    return name
}

/// The `profiles/score` handler (PROTOCOL.md §8.7).
private func scoreProfiles(_ req: Request) throws -> JSON {
    let p = req.params
    let source = try TableRef(p, "source")
    let moa = try optionalNonEmpty(p, "moa") ?? "Metadata_MOA"
    let compound = try optionalNonEmpty(p, "compound") ?? "Metadata_Compound"
    let concentration = try optionalNonEmpty(p, "concentration") ?? "Metadata_Concentration"
    let batch = try optionalNonEmpty(p, "batch")
    let exclude = try p.has("exclude") ? ValueMatch(p, "exclude") : nil
    let allMetrics = ["nsc", "nscb", "perCompound", "map"]
    let metrics = try p.optionalStrings("metrics", count: 1...allMetrics.count) ?? allMetrics
    for (i, m) in metrics.enumerated() where !allMetrics.contains(m) {
        throw p.error("metrics", "[\(i)] must be one of \(allMetrics.joined(separator: ", ")), not \(quoted(m))")
    }
    let confusion = try p.bool("confusion", default: false)
    let distance = DistanceMetric(rawValue: try p.choice("distance", DistanceMetric.allCases.map(\.rawValue), default: "cosine"))!
    let neighbors = try p.int("neighbors", default: 0, in: 0...1000)

    var table = try source.load(req.server.profiles, field: "source", cancellation: req.cancellation)
    try requireColumn(table, compound, field: "compound", source: source)
    try requireColumn(table, concentration, field: "concentration", source: source)
    try requireColumn(table, moa, field: "moa", source: source)
    if let exclude { try requireColumn(table, exclude.column, field: "exclude.column", source: source) }
    // The batch column: required when named; by default Metadata_Plate if the table has it.
    let batchColumn: String?
    if let batch {
        try requireColumn(table, batch, field: "batch", source: source)
        batchColumn = batch
    } else {
        batchColumn = table.metadataColumns.contains("Metadata_Plate") ? "Metadata_Plate" : nil
    }
    if let exclude {
        let drop = try exclude.matches(table)
        table = table.rows(drop.indices.filter { !drop[$0] })
    }
    let columns = TreatmentColumns(compound: compound, concentration: concentration, moa: moa, batch: batchColumn)
    let score: MOAScore = try source.located {
        let tp = try treatmentProfiles(from: table, columns: columns, control: nil, aggregation: .mean)
        guard Set(tp.treatments.map(\.compound)).count >= 2 else {
            throw CytoError(.invalidInput, "\(tp.treatments.count) treatment(s) of \(Set(tp.treatments.map(\.compound)).count) compound(s) with a MOA: scoring needs at least two compounds",
                            field: "compound")
        }
        return try scoreMOA(treatments: tp.treatments, profiles: tp.profiles, featureCount: tp.featureNames.count,
                            distance: distance, useBatches: batchColumn != nil, neighborCount: neighbors)
    }
    try req.checkCancelled()
    var result = scoreJSON(score, metrics: Set(metrics), confusion: confusion)
    if neighbors > 0 { result["neighbors"] = neighborsJSON(score) }
    return .object(result)
}

/// Each treatment (in (compound, concentration) order) with its nearest treatments of other
/// compounds, nearest first: what `cytogan profile score --neighbors` lists.
func neighborsJSON(_ s: MOAScore) -> JSON {
    func treatment(_ i: Int) -> [String: JSON] {
        let t = s.treatments[i]
        return ["compound": .string(t.compound), "concentration": .double(t.concentration), "moa": .string(t.moa)]
    }
    return .array(s.treatments.indices.map { i in
        var o = treatment(i)
        o["nscCorrect"] = .bool(s.scores[i].nscCorrect)
        o["neighbors"] = .array(s.scores[i].neighbors.map { n in
            var x = treatment(n.index)
            x["distance"] = .double(n.distance)
            return .object(x)
        })
        return .object(o)
    })
}

/// The `profiles/export` handler (PROTOCOL.md §8.7).
private func exportProfiles(_ req: Request) throws -> JSON {
    let p = req.params
    let source = try TableRef(p, "source")
    let path = try nonEmpty(p, "path")
    let isNPY = path.lowercased().hasSuffix(".npy")
    let format = try p.choice("format", ["csv", "npy"], default: isNPY ? "npy" : "csv")
    guard (format == "npy") == isNPY else {
        throw p.error("format", format == "npy" ? "npy needs a path ending in .npy" : "csv cannot be written to a path ending in .npy")
    }
    let table = try source.load(req.server.profiles, field: "source", cancellation: req.cancellation)
    try req.checkCancelled()
    if let slash = path.lastIndex(of: "/"), slash != path.startIndex {
        try makeDirectories(String(path[..<slash]))
    }
    try FeatureRowWriter.write(table, to: path)
    var result: [String: JSON] = ["path": .string(path), "format": .string(format), "rows": JSON(table.count),
                                  "features": JSON(table.featureCount),
                                  "metadataColumns": .array(table.metadataColumns.map { .string($0) })]
    if isNPY { result["metadataPath"] = .string(FeatureRowReader.defaultMetadataPath(for: path)) }
    return .object(result)
}


/// The `profiles/score` result (PROTOCOL.md §8.7) from the library's scores: the parts asked for.
func scoreJSON(_ s: MOAScore, metrics: Set<String>, confusion: Bool) -> [String: JSON] {
    func accuracy(_ value: Double, _ correct: Int, _ total: Int) -> JSON {
        ["accuracy": .double(value), "correct": JSON(correct), "total": JSON(total)]
    }
    var o: [String: JSON] = ["treatments": JSON(s.treatments.count)]
    if metrics.contains("nsc") {
        o["nsc"] = accuracy(s.nsc, s.scores.filter(\.nscCorrect).count, s.scores.count)
    }
    if metrics.contains("nscb") {
        let kept = s.scores.compactMap(\.nscbCorrect)
        o["nscb"] = s.nscb.map { accuracy($0, kept.filter { $0 }.count, kept.count) } ?? .null
    }
    if metrics.contains("perCompound") {
        var share: [String: (Int, Int)] = [:]
        for (t, sc) in zip(s.treatments, s.scores) {
            share[t.compound, default: (0, 0)].0 += sc.nscCorrect ? 1 : 0
            share[t.compound, default: (0, 0)].1 += 1
        }
        o["perCompound"] = ["mean": .double(s.perCompound),
                            "compounds": .object(share.mapValues { .double(Double($0.0) / Double($0.1)) })]
    }
    if metrics.contains("map") { o["map"] = s.map.map { JSON.double($0) } ?? .null }
    if confusion {
        o["confusion"] = ["labels": .array(s.moas.map { .string($0) }),
                          "matrix": .array(s.confusionNSC.map { .array($0.map { JSON($0) }) })]
    }
    return o
}
