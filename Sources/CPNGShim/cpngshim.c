// See include/cpngshim.h. Every libpng call runs after a setjmp; libpng's error callback copies
// the message and longjmps back here, so no libpng error can abort the process or reach stdout.
#include "cpngshim.h"

#include <png.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>

typedef struct shim_state {
    jmp_buf jump;
    char *message;
    size_t message_size;
    cyto_png_warning_fn warn;
    void *context;
    /* memory source */
    const uint8_t *data;
    size_t size;
    size_t offset;
    /* memory sink */
    uint8_t *out;
    size_t out_size;
    size_t out_capacity;
    int out_failed;
} shim_state;

static void set_message(shim_state *s, const char *text) {
    if (s->message == NULL || s->message_size == 0) return;
    strncpy(s->message, text != NULL ? text : "unknown libpng error", s->message_size - 1);
    s->message[s->message_size - 1] = '\0';
}

static void on_error(png_structp png, png_const_charp text) {
    shim_state *s = (shim_state *)png_get_error_ptr(png);
    set_message(s, text);
    longjmp(s->jump, 1);
}

static void on_warning(png_structp png, png_const_charp text) {
    shim_state *s = (shim_state *)png_get_error_ptr(png);
    if (s->warn != NULL) s->warn(s->context, text != NULL ? text : "");
}

static void read_memory(png_structp png, png_bytep dest, size_t length) {
    shim_state *s = (shim_state *)png_get_io_ptr(png);
    if (length > s->size - s->offset) png_error(png, "unexpected end of file (truncated PNG)");
    memcpy(dest, s->data + s->offset, length);
    s->offset += length;
}

int cyto_png_decode(const uint8_t *data, size_t size, cyto_png_info *info,
                    cyto_png_allocate_fn allocate, cyto_png_warning_fn warn, void *context,
                    char *message, size_t message_size) {
    shim_state s;
    memset(&s, 0, sizeof s);
    s.message = message; s.message_size = message_size;
    s.warn = warn; s.context = context;
    s.data = data; s.size = size;
    if (message_size > 0) message[0] = '\0';
    memset(info, 0, sizeof *info);

    if (size < 8 || png_sig_cmp(data, 0, 8) != 0) {
        set_message(&s, "not a PNG file (bad signature)");
        return 1;
    }
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &s, on_error, on_warning);
    if (png == NULL) { set_message(&s, "libpng could not allocate a reader"); return 1; }
    png_infop pinfo = png_create_info_struct(png);
    if (pinfo == NULL) {
        png_destroy_read_struct(&png, NULL, NULL);
        set_message(&s, "libpng could not allocate an info struct");
        return 1;
    }
    png_bytep *rows = NULL;
    /* Volatile: modified between setjmp and a possible longjmp. */
    png_bytep *volatile rows_v = NULL;
    if (setjmp(s.jump)) {
        free(rows_v);
        png_destroy_read_struct(&png, &pinfo, NULL);
        return 1;
    }
    png_set_read_fn(png, &s, read_memory);
    /* Strict: a stream that is short of image data is an error, not a warning. Ancillary chunks
       (gamma, colour profiles, text) are skipped, so their quirks cannot fail a decode and no
       gamma or colour conversion touches the samples. */
    png_set_benign_errors(png, 0);
    png_set_keep_unknown_chunks(png, PNG_HANDLE_CHUNK_NEVER, NULL, -1);
    png_set_user_limits(png, 1u << 24, 1u << 24);
    png_set_chunk_malloc_max(png, 1u << 24);

    png_read_info(png, pinfo);
    png_uint_32 width = 0, height = 0;
    int depth = 0, color = 0, interlace = 0;
    png_get_IHDR(png, pinfo, &width, &height, &depth, &color, &interlace, NULL, NULL);
    info->file_bit_depth = depth;
    info->file_color_type = color;
    info->interlaced = interlace != PNG_INTERLACE_NONE;

    if (color == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    if (color == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
    if (depth == 16) {
        const int one = 1;
        if (*(const char *)&one == 1) png_set_swap(png); /* PNG is big-endian; deliver native */
    }
    int passes = png_set_interlace_handling(png);
    (void)passes;
    png_read_update_info(png, pinfo);

    info->width = width;
    info->height = height;
    info->bit_depth = png_get_bit_depth(png, pinfo);
    info->channels = png_get_channels(png, pinfo);
    size_t rowbytes = png_get_rowbytes(png, pinfo);
    size_t expected = (size_t)width * (size_t)info->channels * (size_t)(info->bit_depth / 8);
    if (rowbytes != expected || (info->bit_depth != 8 && info->bit_depth != 16)) {
        png_error(png, "unexpected row layout after transformations");
    }
    if (height > 0 && rowbytes > SIZE_MAX / height) png_error(png, "image too large");
    uint8_t *pixels = (uint8_t *)allocate(context, info, rowbytes * height);
    if (pixels == NULL) {
        set_message(&s, "refused by caller");
        png_destroy_read_struct(&png, &pinfo, NULL);
        return 2;
    }
    rows = (png_bytep *)malloc(sizeof(png_bytep) * (height > 0 ? height : 1));
    rows_v = rows;
    if (rows == NULL) png_error(png, "out of memory for row pointers");
    for (png_uint_32 y = 0; y < height; y++) rows[y] = pixels + (size_t)y * rowbytes;
    png_read_image(png, rows);
    png_read_end(png, NULL);
    free(rows);
    rows_v = NULL;
    png_destroy_read_struct(&png, &pinfo, NULL);
    return 0;
}

static void write_memory(png_structp png, png_bytep src, size_t length) {
    shim_state *s = (shim_state *)png_get_io_ptr(png);
    if (length > s->out_capacity - s->out_size) {
        size_t want = s->out_capacity ? s->out_capacity : 4096;
        while (want - s->out_size < length) {
            if (want > SIZE_MAX / 2) png_error(png, "PNG too large for memory");
            want *= 2;
        }
        uint8_t *grown = (uint8_t *)realloc(s->out, want);
        if (grown == NULL) png_error(png, "out of memory while encoding PNG");
        s->out = grown;
        s->out_capacity = want;
    }
    memcpy(s->out + s->out_size, src, length);
    s->out_size += length;
}

static void flush_memory(png_structp png) { (void)png; }

int cyto_png_encode(const void *pixels, uint32_t width, uint32_t height, int channels,
                    int bit_depth, int compression_level, uint8_t **out, size_t *out_size,
                    char *message, size_t message_size) {
    shim_state s;
    memset(&s, 0, sizeof s);
    s.message = message; s.message_size = message_size;
    if (message_size > 0) message[0] = '\0';
    *out = NULL; *out_size = 0;
    int color;
    switch (channels) {
    case 1: color = PNG_COLOR_TYPE_GRAY; break;
    case 2: color = PNG_COLOR_TYPE_GRAY_ALPHA; break;
    case 3: color = PNG_COLOR_TYPE_RGB; break;
    case 4: color = PNG_COLOR_TYPE_RGB_ALPHA; break;
    default: set_message(&s, "PNG holds 1 to 4 channels"); return 1;
    }
    if (bit_depth != 8 && bit_depth != 16) { set_message(&s, "PNG bit depth must be 8 or 16"); return 1; }
    if (width == 0 || height == 0) { set_message(&s, "PNG needs a nonzero width and height"); return 1; }
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &s, on_error, on_warning);
    if (png == NULL) { set_message(&s, "libpng could not allocate a writer"); return 1; }
    png_infop pinfo = png_create_info_struct(png);
    if (pinfo == NULL) {
        png_destroy_write_struct(&png, NULL);
        set_message(&s, "libpng could not allocate an info struct");
        return 1;
    }
    if (setjmp(s.jump)) {
        free(s.out);
        png_destroy_write_struct(&png, &pinfo);
        return 1;
    }
    png_set_write_fn(png, &s, write_memory, flush_memory);
    png_set_compression_level(png, compression_level);
    png_set_IHDR(png, pinfo, width, height, bit_depth, color, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, pinfo);
    if (bit_depth == 16) {
        const int one = 1;
        if (*(const char *)&one == 1) png_set_swap(png);
    }
    size_t rowbytes = (size_t)width * (size_t)channels * (size_t)(bit_depth / 8);
    for (uint32_t y = 0; y < height; y++) {
        png_write_row(png, (png_const_bytep)pixels + (size_t)y * rowbytes);
    }
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &pinfo);
    *out = s.out;
    *out_size = s.out_size;
    return 0;
}
