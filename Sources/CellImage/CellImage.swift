// CellImage: cell images in and out. See Package.swift for this module's place in the layering.
//
// The way of one crop (CropLoader.load):
//   ImageReader (TIFFDecoder via libtiff, PNGCodec via libpng + CPNGShim) -> PixelImage, planar,
//   the file's own sample type -> Cropping/cut (window around a centre or box, zero outside the
//   field; fields decoded once through FieldCache) -> keepOnly (label mask) -> Normalization
//   (per-crop max, bit depth, fixed scale, percentiles; to [-1, 1]) -> Resampler (area when
//   shrinking, bilinear when enlarging, or centre pad/crop) -> Float32 CHW of the model's size.
//
// Out: ImageWriter (TIFF of any sample type, PNG 8/16-bit; atomic), DisplayMapping (channels to
// RGB colours with contrast stretch), Montage (grids, a row per interpolation).
// Measurements: CellFeatures (intensity per channel, nucleus shape).
// Specs from JSON (CropSpec.init(json:)) or manifests (CropManifest); the model stores
// Preprocessing.json.
