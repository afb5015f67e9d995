/// Every method group this build serves. A group is one file in Methods/ with an
/// `extension Server { func registerXMethods() }`; adding one is a line here.
extension Server {
    /// Registers all method groups: what `cytogan serve` runs.
    public func registerStandardMethods() {
        registerLifecycleMethods()
        registerJobMethods()
    }

    /// A worker on stdin/stdout with every standard method registered.
    public static func standard(options: ServerOptions, log: Logger = Logger()) -> Server {
        let s = Server(options: options, log: log)
        s.registerStandardMethods()
        return s
    }
}
