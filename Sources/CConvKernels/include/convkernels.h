// CConvKernels: direct 2-D convolution for layers with few input channels, where lowering to a
// GEMM spends most of its time copying (unfolding a thin K and packing it again). Each image is
// copied once into a zero-padded, column-phase-split buffer; each output row is then a sum of
// broadcast weights times contiguous input vectors, in AVX-512 or AVX2 + FMA registers chosen at
// run time. Builds on any x86-64 or other CPU; without those instruction sets `ck_conv_isa`
// reports 0 and the caller keeps its GEMM path.
#ifndef CYTOGAN_CONVKERNELS_H
#define CYTOGAN_CONVKERNELS_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Geometry of one convolution of a [c][h][w] image into [o][ho][wo] (cross-correlation),
/// with the padding before the first row and column already resolved.
typedef struct ck_conv {
    int c, h, w;
    int o;
    int kh, kw, sh, sw;
    int pad_top, pad_left;
    int ho, wo;
} ck_conv;

/// Instruction sets.
enum { CK_ISA_NONE = 0, CK_ISA_AVX2 = 1, CK_ISA_AVX512 = 2 };

/// The best instruction set this CPU offers (CK_ISA_NONE where neither).
int ck_conv_cpu_isa(void);

/// Output channels per register block for an instruction set (the packed weights' unit).
int ck_conv_block(int isa);

/// Floats of packed weights for a geometry and instruction set.
size_t ck_conv_packed_count(const ck_conv *g, int isa);

/// Floats of scratch one thread needs for one image.
size_t ck_conv_scratch_count(const ck_conv *g);

/// Packs weights [o][c][kh][kw] into the layout `ck_conv_forward` reads for `isa`.
void ck_conv_pack(const ck_conv *g, int isa, const float *weights, float *packed);

/// y[o][ho][wo] = bias[o] + sum over (c, ky, kx) of w * x[c][sh * y + ky - pad_top][sw * x + kx - pad_left]
/// (zero outside the image) for one image. `bias` may be NULL. Returns 0, or -1 when `isa` is not
/// available on this CPU or the geometry is out of range (nothing written).
int ck_conv_forward(const ck_conv *g, int isa, const float *x, const float *packed, const float *bias,
                    float *y, float *scratch);

/// dw[o][c][ky][kx] += sum over output positions (y, x) of dy[o][y][x] times the input pixel that
/// weight met in the forward pass, for one image (the weight gradient). Returns 0, or -1 as
/// `ck_conv_forward` (nothing added).
int ck_conv_weight_gradient(const ck_conv *g, int isa, const float *x, const float *dy, float *dw, float *scratch);

#ifdef __cplusplus
}
#endif

#endif
