/// Which columns of a table are not features: the pycytominer convention (`Metadata_*`) plus the
/// key columns of a CellProfiler object table, which manifests carry through to feature tables so
/// rows join back to the objects they came from.
public enum TableColumns {
    /// Key columns carried by default when a manifest has them (`Prefix*` matches a prefix).
    public static let defaultKeys = ["ImageNumber", "ObjectNumber", "Location_*"]

    /// Whether `name` is metadata by default: `Metadata_*` or a key column.
    public static func isMetadataByDefault(_ name: String) -> Bool {
        name.hasPrefix("Metadata_") || defaultKeys.contains { matches(name, $0) }
    }

    /// Whether `name` matches `pattern`: equal, or starting with it when it ends in `*`.
    public static func matches(_ name: String, _ pattern: String) -> Bool {
        pattern.hasSuffix("*") ? name.hasPrefix(pattern.dropLast()) : name == pattern
    }
}
