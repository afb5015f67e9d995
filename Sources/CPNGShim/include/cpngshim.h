// CPNGShim: libpng reads and writes behind setjmp, so libpng's errors come back as a return code
// and a message instead of aborting the process (Swift cannot call setjmp itself).
#ifndef CYTOGAN_CPNGSHIM_H
#define CYTOGAN_CPNGSHIM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// The image as it will be delivered: rows of width * channels samples, each 1 byte (bit_depth 8)
/// or 2 bytes in native byte order (bit_depth 16). Palette images are expanded to RGB(A), gray
/// images of 1, 2 or 4 bits to 8 bits; other samples are the file's own.
typedef struct cyto_png_info {
    uint32_t width;
    uint32_t height;
    int bit_depth;        /* of the delivered samples: 8 or 16 */
    int channels;         /* delivered: 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA */
    int file_bit_depth;   /* as stored in the file: 1, 2, 4, 8 or 16 */
    int file_color_type;  /* PNG_COLOR_TYPE_* as stored */
    int interlaced;
} cyto_png_info;

/// Called once the header is known; returns a buffer of at least `bytes` bytes for the pixels,
/// or NULL to refuse the image (the decode then fails with "refused by caller").
typedef void *(*cyto_png_allocate_fn)(void *context, const cyto_png_info *info, size_t bytes);

/// Called for each libpng warning.
typedef void (*cyto_png_warning_fn)(void *context, const char *message);

/// Decodes a whole PNG held in memory. Returns 0 on success; otherwise nonzero with a
/// NUL-terminated reason in `message` (libpng's own error text where it has one).
int cyto_png_decode(const uint8_t *data, size_t size, cyto_png_info *info,
                    cyto_png_allocate_fn allocate, cyto_png_warning_fn warn, void *context,
                    char *message, size_t message_size);

/// Encodes rows of width * channels samples (8-bit, or 16-bit in native byte order) as a PNG in a
/// buffer allocated with malloc (*out, *out_size; the caller frees it). Returns 0 on success.
int cyto_png_encode(const void *pixels, uint32_t width, uint32_t height, int channels,
                    int bit_depth, int compression_level, uint8_t **out, size_t *out_size,
                    char *message, size_t message_size);

#ifdef __cplusplus
}
#endif

#endif
