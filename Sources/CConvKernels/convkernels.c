// Direct convolution kernels; see include/convkernels.h.
#include "convkernels.h"

#include <stddef.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CK_X86 1
#endif

static int ck_rows(const ck_conv *g) { return (g->ho - 1) * g->sh + g->kh; }
static int ck_cols(const ck_conv *g) { return ((g->wo + 15) / 16) * 16 + (g->kw - 1) / g->sw + 1; }

int ck_conv_cpu_isa(void) {
#ifdef CK_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) return CK_ISA_AVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return CK_ISA_AVX2;
#endif
    return CK_ISA_NONE;
}

int ck_conv_block(int isa) { return isa == CK_ISA_AVX512 ? 8 : 4; }

size_t ck_conv_packed_count(const ck_conv *g, int isa) {
    int ob = ck_conv_block(isa);
    return (size_t)((g->o + ob - 1) / ob) * ob * g->c * g->kh * g->kw;
}

size_t ck_conv_scratch_count(const ck_conv *g) {
    return (size_t)g->c * g->sw * ck_rows(g) * ck_cols(g);
}

void ck_conv_pack(const ck_conv *g, int isa, const float *weights, float *packed) {
    const int ob = ck_conv_block(isa), taps = g->c * g->kh * g->kw, blocks = (g->o + ob - 1) / ob;
    for (int b = 0; b < blocks; b++)
        for (int t = 0; t < taps; t++)
            for (int k = 0; k < ob; k++) {
                int o = b * ob + k;
                packed[((size_t)b * taps + t) * ob + k] = o < g->o ? weights[(size_t)o * taps + t] : 0.0f;
            }
}

/// S[c][phase][r][j] = x[c][r - pad_top][sw * j + phase - pad_left], zero outside the image.
static void ck_pad(const ck_conv *g, const float *x, float *s) {
    const int rows = ck_rows(g), cols = ck_cols(g);
    for (int c = 0; c < g->c; c++)
        for (int p = 0; p < g->sw; p++)
            for (int r = 0; r < rows; r++) {
                float *dst = s + (((size_t)c * g->sw + p) * rows + r) * cols;
                const int row = r - g->pad_top;
                if (row < 0 || row >= g->h) { memset(dst, 0, sizeof(float) * cols); continue; }
                const float *src = x + ((size_t)c * g->h + row) * g->w;
                if (g->sw == 1) {
                    int lo = g->pad_left, n = g->w;
                    if (lo + n > cols) n = cols - lo;
                    memset(dst, 0, sizeof(float) * lo);
                    memcpy(dst + lo, src, sizeof(float) * n);
                    if (lo + n < cols) memset(dst + lo + n, 0, sizeof(float) * (cols - lo - n));
                } else {
                    for (int j = 0; j < cols; j++) {
                        int col = g->sw * j + p - g->pad_left;
                        dst[j] = (col >= 0 && col < g->w) ? src[col] : 0.0f;
                    }
                }
            }
}

/// Copies a block's rows (channels o0 ..< o0 + ob, output row y, columns x0 ..< x0 + n) out of
/// the block's temporary.
static void ck_store(const ck_conv *g, float *y, const float *tmp, int ob, int width, int o0, int row, int x0, int n) {
    for (int k = 0; k < ob && o0 + k < g->o; k++)
        memcpy(y + ((size_t)(o0 + k) * g->ho + row) * g->wo + x0, tmp + (size_t)k * width, sizeof(float) * n);
}

#ifdef CK_X86

#define CK_AVX512 __attribute__((target("avx512f,fma")))
#define CK_AVX2 __attribute__((target("avx2,fma")))
#define CK_INLINE static inline __attribute__((always_inline))

#define CK_BLOCK_ARGS const ck_conv *g, const float *s, size_t phase, size_t cols, const float *w, \
                      const float *bias, int row, int x0, float *tmp
#define CK_WGRAD_ARGS const ck_conv *g, const float *s, size_t phase, size_t cols, const float *dy, \
                      int o0, int t0, float *dw

/// One instruction set's forward blocks: `ob` output channels by 1, 2 or 3 vectors of `vl`
/// columns, written to a temporary of ob rows of 3 * vl.
typedef struct ck_forward_kernels {
    int ob, vl;
    void (*block[3])(CK_BLOCK_ARGS);
} ck_forward_kernels;

/// One instruction set's weight-gradient blocks: `ob` output channels by 1 ..< `nt` + 1 taps.
typedef struct ck_wgrad_kernels {
    int ob, nt;
    void (*block[3])(CK_WGRAD_ARGS);
} ck_wgrad_kernels;

/// Every output row of every block of channels, in runs of up to three vectors (four as two
/// and two, so no run is a single vector where two would do).
static void ck_forward_rows(const ck_conv *g, const ck_forward_kernels *k, const float *s, const float *packed,
                            const float *bias, float *y) {
    const size_t cols = ck_cols(g), phase = (size_t)ck_rows(g) * cols;
    const int ob = k->ob, vl = k->vl, taps = g->c * g->kh * g->kw, nvec = (g->wo + vl - 1) / vl;
    float tmp[8 * 48], b[8];
    for (int o0 = 0; o0 < g->o; o0 += ob) {
        for (int j = 0; j < ob; j++) b[j] = (bias && o0 + j < g->o) ? bias[o0 + j] : 0.0f;
        const float *w = packed + (size_t)(o0 / ob) * taps * ob;
        for (int row = 0; row < g->ho; row++) {
            for (int v = 0; v < nvec;) {
                const int rem = nvec - v, nv = rem == 4 ? 2 : rem >= 3 ? 3 : rem, x0 = v * vl;
                const int n = g->wo - x0 < vl * nv ? g->wo - x0 : vl * nv;
                k->block[nv - 1](g, s, phase, cols, w, b, row, x0, tmp);
                ck_store(g, y, tmp, ob, 3 * vl, o0, row, x0, n);
                v += nv;
            }
        }
    }
}

/// Every block of output channels by every run of taps.
static void ck_weight_gradient_blocks(const ck_conv *g, const ck_wgrad_kernels *k, const float *s, const float *dy, float *dw) {
    const size_t cols = ck_cols(g), phase = (size_t)ck_rows(g) * cols;
    const int taps = g->c * g->kh * g->kw;
    for (int o0 = 0; o0 < g->o; o0 += k->ob)
        for (int t0 = 0; t0 < taps;) {
            const int nt = taps - t0 >= k->nt ? k->nt : taps - t0;
            k->block[nt - 1](g, s, phase, cols, dy, o0, t0, dw);
            t0 += nt;
        }
}

/// 8 output channels x NV vectors of 16 columns, accumulated over every tap.
CK_INLINE CK_AVX512 void ck_block512(const ck_conv *g, const float *s, size_t phase, size_t cols, const float *w,
                                      const float *bias, int row, int x0, float *tmp, const int NV) {
    __m512 a[8][3];
    for (int k = 0; k < 8; k++) for (int j = 0; j < 3; j++) a[k][j] = _mm512_set1_ps(bias[k]);
    for (int c = 0; c < g->c; c++) {
        for (int ky = 0; ky < g->kh; ky++) {
            const float *line = s + (size_t)c * g->sw * phase + (size_t)(g->sh * row + ky) * cols + x0;
            const float *r = line;
            for (int kx = 0, p = 0; kx < g->kw; kx++) {
                if (kx > 0) {  // the next column phase, or the first phase one column on
                    if (++p == g->sw) { p = 0; r += 1 - (ptrdiff_t)(g->sw - 1) * (ptrdiff_t)phase; } else r += phase;
                }
                __m512 v[3];
                for (int j = 0; j < NV; j++) v[j] = _mm512_loadu_ps(r + 16 * j);
                for (int k = 0; k < 8; k++) {
                    const __m512 wk = _mm512_set1_ps(w[k]);
                    for (int j = 0; j < NV; j++) a[k][j] = _mm512_fmadd_ps(wk, v[j], a[k][j]);
                }
                w += 8;
            }
        }
    }
    for (int k = 0; k < 8; k++)
        for (int j = 0; j < NV; j++) _mm512_storeu_ps(tmp + k * 48 + 16 * j, a[k][j]);
}

CK_AVX512 static void ck_block512_1(CK_BLOCK_ARGS) { ck_block512(g, s, phase, cols, w, bias, row, x0, tmp, 1); }
CK_AVX512 static void ck_block512_2(CK_BLOCK_ARGS) { ck_block512(g, s, phase, cols, w, bias, row, x0, tmp, 2); }
CK_AVX512 static void ck_block512_3(CK_BLOCK_ARGS) { ck_block512(g, s, phase, cols, w, bias, row, x0, tmp, 3); }
static const ck_forward_kernels ck_forward512 = {8, 16, {ck_block512_1, ck_block512_2, ck_block512_3}};

/// 4 output channels x NV vectors of 8 columns, accumulated over every tap (12 accumulators at
/// NV = 3, enough to keep two FMA units busy through their latency).
CK_INLINE CK_AVX2 void ck_block256(const ck_conv *g, const float *s, size_t phase, size_t cols, const float *w,
                                    const float *bias, int row, int x0, float *tmp, const int NV) {
    __m256 a[4][3];
    for (int k = 0; k < 4; k++) for (int v = 0; v < 3; v++) a[k][v] = _mm256_set1_ps(bias[k]);
    for (int c = 0; c < g->c; c++) {
        for (int ky = 0; ky < g->kh; ky++) {
            const float *line = s + (size_t)c * g->sw * phase + (size_t)(g->sh * row + ky) * cols + x0;
            const float *r = line;
            for (int kx = 0, p = 0; kx < g->kw; kx++) {
                if (kx > 0) {  // the next column phase, or the first phase one column on
                    if (++p == g->sw) { p = 0; r += 1 - (ptrdiff_t)(g->sw - 1) * (ptrdiff_t)phase; } else r += phase;
                }
                __m256 v[3];
                for (int j = 0; j < NV; j++) v[j] = _mm256_loadu_ps(r + 8 * j);
                for (int k = 0; k < 4; k++) {
                    const __m256 wk = _mm256_broadcast_ss(w + k);
                    for (int j = 0; j < NV; j++) a[k][j] = _mm256_fmadd_ps(wk, v[j], a[k][j]);
                }
                w += 4;
            }
        }
    }
    for (int k = 0; k < 4; k++)
        for (int j = 0; j < NV; j++) _mm256_storeu_ps(tmp + k * 24 + 8 * j, a[k][j]);
}

CK_AVX2 static void ck_block256_1(CK_BLOCK_ARGS) { ck_block256(g, s, phase, cols, w, bias, row, x0, tmp, 1); }
CK_AVX2 static void ck_block256_2(CK_BLOCK_ARGS) { ck_block256(g, s, phase, cols, w, bias, row, x0, tmp, 2); }
CK_AVX2 static void ck_block256_3(CK_BLOCK_ARGS) { ck_block256(g, s, phase, cols, w, bias, row, x0, tmp, 3); }
static const ck_forward_kernels ck_forward256 = {4, 8, {ck_block256_1, ck_block256_2, ck_block256_3}};

/// Weight gradient for output channels o0 ..< o0 + 8 (those below g->o) and the NT taps from
/// tap t0 (tap = (c * kh + ky) * kw + kx): 8 x NT vector sums over every output position.
CK_INLINE CK_AVX512 void ck_wgrad512(const ck_conv *g, const float *s, size_t phase, size_t cols, const float *dy,
                                      int o0, int t0, float *dw, const int NT) {
    const int taps = g->c * g->kh * g->kw, plane = g->ho * g->wo;
    const int on = g->o - o0 < 8 ? g->o - o0 : 8;
    size_t off[3];
    for (int j = 0; j < NT; j++) {
        const int t = t0 + j, c = t / (g->kh * g->kw), ky = (t / g->kw) % g->kh, kx = t % g->kw;
        off[j] = ((size_t)c * g->sw + kx % g->sw) * phase + (size_t)ky * cols + kx / g->sw;
    }
    __m512 a[8][3];
    for (int k = 0; k < 8; k++) for (int j = 0; j < 3; j++) a[k][j] = _mm512_setzero_ps();
    for (int y = 0; y < g->ho; y++) {
        const float *line = s + (size_t)g->sh * y * cols;
        for (int x0 = 0; x0 < g->wo; x0 += 16) {
            const int n = g->wo - x0 < 16 ? g->wo - x0 : 16;
            const __mmask16 m = (__mmask16)((1u << n) - 1u);
            __m512 d[8];
            for (int k = 0; k < 8; k++)
                d[k] = k < on ? _mm512_maskz_loadu_ps(m, dy + (size_t)(o0 + k) * plane + (size_t)y * g->wo + x0) : _mm512_setzero_ps();
            for (int j = 0; j < NT; j++) {
                const __m512 v = _mm512_loadu_ps(line + off[j] + x0);
                for (int k = 0; k < 8; k++) a[k][j] = _mm512_fmadd_ps(d[k], v, a[k][j]);
            }
        }
    }
    for (int k = 0; k < on; k++)
        for (int j = 0; j < NT; j++) dw[(size_t)(o0 + k) * taps + t0 + j] += _mm512_reduce_add_ps(a[k][j]);
}

CK_AVX512 static void ck_wgrad512_1(CK_WGRAD_ARGS) { ck_wgrad512(g, s, phase, cols, dy, o0, t0, dw, 1); }
CK_AVX512 static void ck_wgrad512_2(CK_WGRAD_ARGS) { ck_wgrad512(g, s, phase, cols, dy, o0, t0, dw, 2); }
CK_AVX512 static void ck_wgrad512_3(CK_WGRAD_ARGS) { ck_wgrad512(g, s, phase, cols, dy, o0, t0, dw, 3); }
static const ck_wgrad_kernels ck_wgrad512_set = {8, 3, {ck_wgrad512_1, ck_wgrad512_2, ck_wgrad512_3}};

/// The same with AVX2: 4 output channels x NT (up to 2) taps.
CK_INLINE CK_AVX2 float ck_hsum256(__m256 v) {
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_movehdup_ps(h));
    return _mm_cvtss_f32(h);
}

CK_INLINE CK_AVX2 void ck_wgrad256(const ck_conv *g, const float *s, size_t phase, size_t cols, const float *dy,
                                    int o0, int t0, float *dw, const int NT) {
    const int taps = g->c * g->kh * g->kw, plane = g->ho * g->wo;
    const int on = g->o - o0 < 4 ? g->o - o0 : 4;
    size_t off[2];
    for (int j = 0; j < NT; j++) {
        const int t = t0 + j, c = t / (g->kh * g->kw), ky = (t / g->kw) % g->kh, kx = t % g->kw;
        off[j] = ((size_t)c * g->sw + kx % g->sw) * phase + (size_t)ky * cols + kx / g->sw;
    }
    __m256 a[4][2];
    for (int k = 0; k < 4; k++) for (int j = 0; j < 2; j++) a[k][j] = _mm256_setzero_ps();
    for (int y = 0; y < g->ho; y++) {
        const float *line = s + (size_t)g->sh * y * cols;
        for (int x0 = 0; x0 < g->wo; x0 += 8) {
            const int n = g->wo - x0 < 8 ? g->wo - x0 : 8;
            const __m256i m = _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
            __m256 d[4];
            for (int k = 0; k < 4; k++)
                d[k] = k < on ? _mm256_maskload_ps(dy + (size_t)(o0 + k) * plane + (size_t)y * g->wo + x0, m) : _mm256_setzero_ps();
            for (int j = 0; j < NT; j++) {
                const __m256 v = _mm256_loadu_ps(line + off[j] + x0);
                for (int k = 0; k < 4; k++) a[k][j] = _mm256_fmadd_ps(d[k], v, a[k][j]);
            }
        }
    }
    for (int k = 0; k < on; k++)
        for (int j = 0; j < NT; j++) dw[(size_t)(o0 + k) * taps + t0 + j] += ck_hsum256(a[k][j]);
}

CK_AVX2 static void ck_wgrad256_1(CK_WGRAD_ARGS) { ck_wgrad256(g, s, phase, cols, dy, o0, t0, dw, 1); }
CK_AVX2 static void ck_wgrad256_2(CK_WGRAD_ARGS) { ck_wgrad256(g, s, phase, cols, dy, o0, t0, dw, 2); }
static const ck_wgrad_kernels ck_wgrad256_set = {4, 2, {ck_wgrad256_1, ck_wgrad256_2, NULL}};

#endif

/* A geometry the kernels can run, on an instruction set this CPU has. */
static int ck_usable(const ck_conv *g, int isa) {
    if (g->c <= 0 || g->o <= 0 || g->kh <= 0 || g->kw <= 0 || g->sh <= 0 || g->sw <= 0 || g->ho <= 0 || g->wo <= 0 ||
        g->pad_left < 0 || g->pad_top < 0 || g->pad_left > g->kw || g->pad_top > g->kh)
        return 0;
    return isa != CK_ISA_NONE && isa <= ck_conv_cpu_isa();
}

int ck_conv_forward(const ck_conv *g, int isa, const float *x, const float *packed, const float *bias,
                    float *y, float *scratch) {
    if (!ck_usable(g, isa)) return -1;
#ifdef CK_X86
    ck_pad(g, x, scratch);
    ck_forward_rows(g, isa == CK_ISA_AVX512 ? &ck_forward512 : &ck_forward256, scratch, packed, bias, y);
    return 0;
#else
    (void)x; (void)packed; (void)bias; (void)y; (void)scratch;
    return -1;
#endif
}

int ck_conv_weight_gradient(const ck_conv *g, int isa, const float *x, const float *dy, float *dw, float *scratch) {
    if (!ck_usable(g, isa)) return -1;
#ifdef CK_X86
    ck_pad(g, x, scratch);
    ck_weight_gradient_blocks(g, isa == CK_ISA_AVX512 ? &ck_wgrad512_set : &ck_wgrad256_set, scratch, dy, dw);
    return 0;
#else
    (void)x; (void)dy; (void)dw; (void)scratch;
    return -1;
#endif
}
