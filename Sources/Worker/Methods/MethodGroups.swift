/// Every method group this build serves. A group is one file in Methods/ holding
/// `extension Server { func registerXMethods() { register(...) ... } }`; adding one is a line in
/// `registerStandardMethods()`, and flipping `"x-implemented"` to true in its schemas under
/// protocol/schemas/messages (the Python tests check that capabilities and schemas agree).
///
/// A handler, in the manner of the existing groups:
///
///     register("samples/generate", params: ["count", "latents", "seed", "output", "returnLatents", "returnImages"],
///              summary: "Generate cells from noise.") { req in          // .serial: the work thread
///         let p = req.params
///         _ = try p.exactlyOne(of: ["count", "latents"])              // decode every param first:
///         let latents = try p.optionalObjects("latents") ?? []        // errors are -32602 naming the field
///         let n = try p.optionalInt("count", in: 1...10_000) ?? latents.count
///         let output = try p.optionalObject("output")
///         let models = req.server.service(ModelSlot.self) { ModelSlot() }  // state shared by groups
///         guard let model = models.current else { throw CytoError(.noModel, "create or load a model first") }
///         for i in 0..<n {
///             try req.checkCancelled()                                // -32800 for the client
///             ...
///             req.progress(Double(i + 1), total: Double(n), message: "sample \(i + 1)/\(n)")
///         }
///         return ["count": .int(Int64(n)), ...]
///     }
///
/// Long work becomes a job: `try req.server.jobs.start(kind: "train", conflictKey: "model",
/// progressToken: req.progressToken) { ctx in ...; try ctx.pausePoint(); if ctx.isStopRequested
/// { save; return .stopped(...) }; ...; return .done(result) }` returns the JobStatus to answer with.
/// Library errors (`CytoError`) thrown from handlers travel with their kind's code and location.
extension Server {
    /// Registers all method groups: what `cytogan serve` runs.
    public func registerStandardMethods() {
        registerLifecycleMethods()
        registerJobMethods()
        registerProfileMethods()
        registerModelMethods()
        registerFeatureMethods()
        registerSampleMethods()
        registerTrainMethods()
        registerRealismMethods()
        registerToolMethods()
        registerResourceMethods()
    }

    /// A worker on stdin/stdout with every standard method registered.
    public static func standard(options: ServerOptions, log: Logger = Logger()) -> Server {
        let s = Server(options: options, log: log)
        s.registerStandardMethods()
        return s
    }
}
