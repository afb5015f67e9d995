// CConvKernels: direct 2-D convolution for layers with few input channels, where lowering to a
// GEMM spends most of its time copying (unfolding a thin K and packing it again). Each image is
// copied once into a zero-padded, column-phase-split buffer; each output row is then a sum of
// broadcast weights times contiguous input vectors, in AVX-512 or AVX2 + FMA registers chosen at
// run time. Builds on any x86-64 or other CPU; without those instruction sets `ck_conv_isa`
// reports 0 and the caller keeps its GEMM path. Also the input and output transforms of
// Winograd's F(2x2, 3x3) convolution, whose matrix products the caller runs on BLAS.
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

/// Winograd F(2x2, 3x3) for a 3 x 3, stride-1 convolution with one pixel of zero padding
/// (the matrix products between the two transforms are the caller's GEMMs). `isa` chooses the
/// compiled variant (one this CPU has: see `ck_conv_cpu_isa`); CK_ISA_NONE is plain C.
/// Floats of scratch `ck_winograd_input` needs for an h x w plane.
size_t ck_winograd_scratch_count(int h, int w);
/// The input transform of one h x w plane, pixel (y, x) at x[y * row + x * column]: each of its
/// th x tw windows (th = (h + 1) / 2, tw = (w + 1) / 2; window (by, bx) covers rows 2by - 1 ...
/// 2by + 2 and the same columns, zero outside) becomes the 16 entries of B^T d B, entry k at
/// v[k * kstride + by * tw + bx].
void ck_winograd_input(int isa, const float *x, long row, long column, int h, int w, float *v, size_t kstride, float *scratch);
/// The output transform: the 16 products of block (by, bx) at m0[k * kstride + by * tw + bx]
/// become the 2 x 2 outputs A^T M A + bias at y[(2by + i) * row + 2bx + j], clipped to h x w.
/// With m1 (not NULL) a second plane's products are written interleaved by column: plane 0's
/// column x at 2x, plane 1's at 2x + 1 (both with the same bias).
void ck_winograd_output(int isa, const float *m0, const float *m1, size_t kstride, int h, int w, float bias, float *y, long row);

/// The weight gradient's transform of one h x w output-gradient plane (pixel (y, x) at
/// dy[y * row + x * column], zero past h x w): each 2 x 2 block (by, bx) becomes the 16 entries of
/// A dy A^T, entry k at g[k * kstride + by * tw + bx]. Scratch: 4 * th * tw floats (at most
/// `ck_winograd_scratch_count`).
void ck_winograd_gradient(int isa, const float *dy, long row, long column, int h, int w, float *g, size_t kstride, float *scratch);

#ifdef __cplusplus
}
#endif

#endif
