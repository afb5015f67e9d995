// Direct convolution kernels and Winograd transforms; see include/convkernels.h.
#include "convkernels.h"

#include <stddef.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CK_X86 1
#endif

#define CK_INLINE static inline __attribute__((always_inline))

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

/* Output channels per register block: AVX-512 takes 8, or 4 for layers of at most 4 outputs
   (the input gradient of a first layer, a generator's last layer), where 8 would waste more
   than half of every FMA; AVX2 takes 4. */
static int ck_block_of(const ck_conv *g, int isa) { return isa == CK_ISA_AVX512 ? (g->o <= 4 ? 4 : 8) : 4; }

size_t ck_conv_packed_count(const ck_conv *g, int isa) {
    int ob = ck_block_of(g, isa);
    return (size_t)((g->o + ob - 1) / ob) * ob * g->c * g->kh * g->kw;
}

size_t ck_conv_scratch_count(const ck_conv *g) {
    return (size_t)g->c * g->sw * ck_rows(g) * ck_cols(g);
}

void ck_conv_pack(const ck_conv *g, int isa, const float *weights, float *packed) {
    const int ob = ck_block_of(g, isa), taps = g->c * g->kh * g->kw, blocks = (g->o + ob - 1) / ob;
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

/* Where kernel column kx + 1's input vectors start, given kx's at r in column phase *p: the
   next column phase, or the first phase one column on. */
CK_INLINE const float *ck_next_column(const float *r, int *p, int sw, size_t phase) {
    if (++*p == sw) { *p = 0; return r + 1 - (ptrdiff_t)(sw - 1) * (ptrdiff_t)phase; }
    return r + phase;
}

/* Offset of tap t's (= (c * kh + ky) * kw + kx) input vectors in the padded, phase-split buffer. */
CK_INLINE size_t ck_tap_offset(const ck_conv *g, int t, size_t phase, size_t cols) {
    const int c = t / (g->kh * g->kw), ky = (t / g->kw) % g->kh, kx = t % g->kw;
    return ((size_t)c * g->sw + kx % g->sw) * phase + (size_t)ky * cols + kx / g->sw;
}

#define CK_BLOCK_ARGS const ck_conv *g, const float *s, size_t phase, size_t cols, const float *w, \
                      const float *bias, int row, int x0, float *tmp
#define CK_WGRAD_ARGS const ck_conv *g, const float *s, size_t phase, size_t cols, const float *dy, \
                      int o0, int t0, float *dw

/// One instruction set's forward blocks: `ob` output channels by 1 ..< `nv` + 1 vectors of `vl`
/// columns, written to a temporary of ob rows of nv * vl (at most 384 floats).
typedef struct ck_forward_kernels {
    int ob, vl, nv;
    void (*block[4])(CK_BLOCK_ARGS);
} ck_forward_kernels;

/// One instruction set's weight-gradient blocks: `ob` output channels by 1 ..< `nt` + 1 taps.
typedef struct ck_wgrad_kernels {
    int ob, nt;
    void (*block[6])(CK_WGRAD_ARGS);
} ck_wgrad_kernels;

/// Every output row of every block of channels, in runs of up to `nv` vectors (with nv = 3,
/// four as two and two, so no run is a single vector where two would do).
static void ck_forward_rows(const ck_conv *g, const ck_forward_kernels *k, const float *s, const float *packed,
                            const float *bias, float *y) {
    const size_t cols = ck_cols(g), phase = (size_t)ck_rows(g) * cols;
    const int ob = k->ob, vl = k->vl, taps = g->c * g->kh * g->kw, nvec = (g->wo + vl - 1) / vl;
    float tmp[384], b[8];
    for (int o0 = 0; o0 < g->o; o0 += ob) {
        for (int j = 0; j < ob; j++) b[j] = (bias && o0 + j < g->o) ? bias[o0 + j] : 0.0f;
        const float *w = packed + (size_t)(o0 / ob) * taps * ob;
        for (int row = 0; row < g->ho; row++) {
            for (int v = 0; v < nvec;) {
                const int rem = nvec - v, nv = rem <= k->nv ? rem : rem == 4 && k->nv == 3 ? 2 : k->nv, x0 = v * vl;
                const int n = g->wo - x0 < vl * nv ? g->wo - x0 : vl * nv;
                k->block[nv - 1](g, s, phase, cols, w, b, row, x0, tmp);
                ck_store(g, y, tmp, ob, k->nv * vl, o0, row, x0, n);
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

/// OB output channels x NV vectors of 16 columns, accumulated over every tap; row k of the
/// temporary starts at k * W. Two shapes: 8 channels by up to 3 vectors, and 4 channels by up to
/// 4 (a whole 64-pixel row) for layers of at most 4 outputs.
CK_INLINE CK_AVX512 void ck_block512(const ck_conv *g, const float *s, size_t phase, size_t cols, const float *w,
                                      const float *bias, int row, int x0, float *tmp, const int OB, const int NV, const int W) {
    __m512 a[8][4];
    for (int k = 0; k < OB; k++) for (int j = 0; j < NV; j++) a[k][j] = _mm512_set1_ps(bias[k]);
    for (int c = 0; c < g->c; c++) {
        for (int ky = 0; ky < g->kh; ky++) {
            const float *r = s + (size_t)c * g->sw * phase + (size_t)(g->sh * row + ky) * cols + x0;
            for (int kx = 0, p = 0; kx < g->kw; kx++) {
                if (kx > 0) r = ck_next_column(r, &p, g->sw, phase);
                __m512 v[4];
                for (int j = 0; j < NV; j++) v[j] = _mm512_loadu_ps(r + 16 * j);
                for (int k = 0; k < OB; k++) {
                    const __m512 wk = _mm512_set1_ps(w[k]);
                    for (int j = 0; j < NV; j++) a[k][j] = _mm512_fmadd_ps(wk, v[j], a[k][j]);
                }
                w += OB;
            }
        }
    }
    for (int k = 0; k < OB; k++)
        for (int j = 0; j < NV; j++) _mm512_storeu_ps(tmp + k * W + 16 * j, a[k][j]);
}

CK_AVX512 static void ck_block512_1(CK_BLOCK_ARGS) { ck_block512(g, s, phase, cols, w, bias, row, x0, tmp, 8, 1, 48); }
CK_AVX512 static void ck_block512_2(CK_BLOCK_ARGS) { ck_block512(g, s, phase, cols, w, bias, row, x0, tmp, 8, 2, 48); }
CK_AVX512 static void ck_block512_3(CK_BLOCK_ARGS) { ck_block512(g, s, phase, cols, w, bias, row, x0, tmp, 8, 3, 48); }
static const ck_forward_kernels ck_forward512 = {8, 16, 3, {ck_block512_1, ck_block512_2, ck_block512_3, NULL}};
CK_AVX512 static void ck_block512n_1(CK_BLOCK_ARGS) { ck_block512(g, s, phase, cols, w, bias, row, x0, tmp, 4, 1, 64); }
CK_AVX512 static void ck_block512n_2(CK_BLOCK_ARGS) { ck_block512(g, s, phase, cols, w, bias, row, x0, tmp, 4, 2, 64); }
CK_AVX512 static void ck_block512n_3(CK_BLOCK_ARGS) { ck_block512(g, s, phase, cols, w, bias, row, x0, tmp, 4, 3, 64); }
CK_AVX512 static void ck_block512n_4(CK_BLOCK_ARGS) { ck_block512(g, s, phase, cols, w, bias, row, x0, tmp, 4, 4, 64); }
static const ck_forward_kernels ck_forward512n = {4, 16, 4, {ck_block512n_1, ck_block512n_2, ck_block512n_3, ck_block512n_4}};

/// 4 output channels x NV vectors of 8 columns, accumulated over every tap (12 accumulators at
/// NV = 3, enough to keep two FMA units busy through their latency).
CK_INLINE CK_AVX2 void ck_block256(const ck_conv *g, const float *s, size_t phase, size_t cols, const float *w,
                                    const float *bias, int row, int x0, float *tmp, const int NV) {
    __m256 a[4][3];
    for (int k = 0; k < 4; k++) for (int v = 0; v < 3; v++) a[k][v] = _mm256_set1_ps(bias[k]);
    for (int c = 0; c < g->c; c++) {
        for (int ky = 0; ky < g->kh; ky++) {
            const float *r = s + (size_t)c * g->sw * phase + (size_t)(g->sh * row + ky) * cols + x0;
            for (int kx = 0, p = 0; kx < g->kw; kx++) {
                if (kx > 0) r = ck_next_column(r, &p, g->sw, phase);
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
static const ck_forward_kernels ck_forward256 = {4, 8, 3, {ck_block256_1, ck_block256_2, ck_block256_3, NULL}};

/* Channel k of a weight-gradient block reads dy's plane o0 + k, or the block's last real channel
   where o0 + k is past the layer's outputs (its sums are computed and dropped, so every load is
   valid and the inner loop has no branch). */
CK_INLINE const float *ck_wgrad_plane(const ck_conv *g, const float *dy, int o0, int k) {
    const int o = o0 + k < g->o ? o0 + k : g->o - 1;
    return dy + (size_t)o * g->ho * g->wo;
}

/// Weight gradient for output channels o0 ..< o0 + 4 (those below g->o) and the NT taps from
/// tap t0 (tap = (c * kh + ky) * kw + kx): 4 x NT vector sums over every output position, in
/// 24 accumulators + 4 gradient vectors + 1 input vector (of 32 registers), 10 loads per 24
/// FMAs. Full vectors first, then each row's masked tail.
CK_INLINE CK_AVX512 void ck_wgrad512(const ck_conv *g, const float *s, size_t phase, size_t cols, const float *dy,
                                      int o0, int t0, float *dw, const int NT) {
    const int taps = g->c * g->kh * g->kw, wo = g->wo, full = wo / 16 * 16;
    const float *p0 = ck_wgrad_plane(g, dy, o0, 0), *p1 = ck_wgrad_plane(g, dy, o0, 1);
    const float *p2 = ck_wgrad_plane(g, dy, o0, 2), *p3 = ck_wgrad_plane(g, dy, o0, 3);
    const float *in[6];
    for (int j = 0; j < NT; j++) in[j] = s + ck_tap_offset(g, t0 + j, phase, cols);
    const __mmask16 tail = (__mmask16)((1u << (wo - full)) - 1u);
    __m512 a0[6], a1[6], a2[6], a3[6];
    for (int j = 0; j < 6; j++) a0[j] = a1[j] = a2[j] = a3[j] = _mm512_setzero_ps();
    /* One loop over every vector of every row (a nest of two makes the compiler shuffle the
       accumulators through the stack). */
    const int nvec = (wo + 15) / 16, count = g->ho * nvec;
    size_t line = 0, d = 0;
    for (int i = 0, x = 0; i < count; i++) {
        const __mmask16 m = x < full ? (__mmask16)0xFFFF : tail;
        const __m512 d0 = _mm512_maskz_loadu_ps(m, p0 + d + x), d1 = _mm512_maskz_loadu_ps(m, p1 + d + x);
        const __m512 d2 = _mm512_maskz_loadu_ps(m, p2 + d + x), d3 = _mm512_maskz_loadu_ps(m, p3 + d + x);
        for (int j = 0; j < NT; j++) {
            const __m512 v = _mm512_loadu_ps(in[j] + line + x);
            a0[j] = _mm512_fmadd_ps(d0, v, a0[j]); a1[j] = _mm512_fmadd_ps(d1, v, a1[j]);
            a2[j] = _mm512_fmadd_ps(d2, v, a2[j]); a3[j] = _mm512_fmadd_ps(d3, v, a3[j]);
        }
        x += 16;
        if (x >= wo) { x = 0; line += (size_t)g->sh * cols; d += (size_t)wo; }
    }
    float *w = dw + (size_t)o0 * taps + t0;
    const int on = g->o - o0;
    for (int j = 0; j < NT; j++) {
        w[j] += _mm512_reduce_add_ps(a0[j]);
        if (on > 1) w[taps + j] += _mm512_reduce_add_ps(a1[j]);
        if (on > 2) w[2 * taps + j] += _mm512_reduce_add_ps(a2[j]);
        if (on > 3) w[3 * taps + j] += _mm512_reduce_add_ps(a3[j]);
    }
}

CK_AVX512 static void ck_wgrad512_1(CK_WGRAD_ARGS) { ck_wgrad512(g, s, phase, cols, dy, o0, t0, dw, 1); }
CK_AVX512 static void ck_wgrad512_2(CK_WGRAD_ARGS) { ck_wgrad512(g, s, phase, cols, dy, o0, t0, dw, 2); }
CK_AVX512 static void ck_wgrad512_3(CK_WGRAD_ARGS) { ck_wgrad512(g, s, phase, cols, dy, o0, t0, dw, 3); }
CK_AVX512 static void ck_wgrad512_4(CK_WGRAD_ARGS) { ck_wgrad512(g, s, phase, cols, dy, o0, t0, dw, 4); }
CK_AVX512 static void ck_wgrad512_5(CK_WGRAD_ARGS) { ck_wgrad512(g, s, phase, cols, dy, o0, t0, dw, 5); }
CK_AVX512 static void ck_wgrad512_6(CK_WGRAD_ARGS) { ck_wgrad512(g, s, phase, cols, dy, o0, t0, dw, 6); }
static const ck_wgrad_kernels ck_wgrad512_set = {4, 6, {ck_wgrad512_1, ck_wgrad512_2, ck_wgrad512_3,
                                                        ck_wgrad512_4, ck_wgrad512_5, ck_wgrad512_6}};

/// The same with AVX2 (16 registers): 4 output channels x NT (up to 2) taps, 8 accumulators +
/// 4 gradient vectors + 2 input vectors, 6 loads per 8 FMAs.
CK_INLINE CK_AVX2 float ck_hsum256(__m256 v) {
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_movehdup_ps(h));
    return _mm_cvtss_f32(h);
}

CK_INLINE CK_AVX2 void ck_wgrad256(const ck_conv *g, const float *s, size_t phase, size_t cols, const float *dy,
                                    int o0, int t0, float *dw, const int NT) {
    const int taps = g->c * g->kh * g->kw, wo = g->wo, full = wo / 8 * 8;
    const float *p0 = ck_wgrad_plane(g, dy, o0, 0), *p1 = ck_wgrad_plane(g, dy, o0, 1);
    const float *p2 = ck_wgrad_plane(g, dy, o0, 2), *p3 = ck_wgrad_plane(g, dy, o0, 3);
    const float *in[2];
    for (int j = 0; j < NT; j++) in[j] = s + ck_tap_offset(g, t0 + j, phase, cols);
    const __m256i all = _mm256_set1_epi32(-1);
    const __m256i tail = _mm256_cmpgt_epi32(_mm256_set1_epi32(wo - full), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    __m256 a0[2], a1[2], a2[2], a3[2];
    for (int j = 0; j < 2; j++) a0[j] = a1[j] = a2[j] = a3[j] = _mm256_setzero_ps();
    const int nvec = (wo + 7) / 8, count = g->ho * nvec;
    size_t line = 0, d = 0;
    for (int i = 0, x = 0; i < count; i++) {
        const __m256i m = x < full ? all : tail;
        const __m256 d0 = _mm256_maskload_ps(p0 + d + x, m), d1 = _mm256_maskload_ps(p1 + d + x, m);
        const __m256 d2 = _mm256_maskload_ps(p2 + d + x, m), d3 = _mm256_maskload_ps(p3 + d + x, m);
        for (int j = 0; j < NT; j++) {
            const __m256 v = _mm256_loadu_ps(in[j] + line + x);
            a0[j] = _mm256_fmadd_ps(d0, v, a0[j]); a1[j] = _mm256_fmadd_ps(d1, v, a1[j]);
            a2[j] = _mm256_fmadd_ps(d2, v, a2[j]); a3[j] = _mm256_fmadd_ps(d3, v, a3[j]);
        }
        x += 8;
        if (x >= wo) { x = 0; line += (size_t)g->sh * cols; d += (size_t)wo; }
    }
    float *w = dw + (size_t)o0 * taps + t0;
    const int on = g->o - o0;
    for (int j = 0; j < NT; j++) {
        w[j] += ck_hsum256(a0[j]);
        if (on > 1) w[taps + j] += ck_hsum256(a1[j]);
        if (on > 2) w[2 * taps + j] += ck_hsum256(a2[j]);
        if (on > 3) w[3 * taps + j] += ck_hsum256(a3[j]);
    }
}

CK_AVX2 static void ck_wgrad256_1(CK_WGRAD_ARGS) { ck_wgrad256(g, s, phase, cols, dy, o0, t0, dw, 1); }
CK_AVX2 static void ck_wgrad256_2(CK_WGRAD_ARGS) { ck_wgrad256(g, s, phase, cols, dy, o0, t0, dw, 2); }
static const ck_wgrad_kernels ck_wgrad256_set = {4, 2, {ck_wgrad256_1, ck_wgrad256_2}};

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
    const ck_forward_kernels *k = isa != CK_ISA_AVX512 ? &ck_forward256 : ck_block_of(g, isa) == 4 ? &ck_forward512n : &ck_forward512;
    ck_forward_rows(g, k, scratch, packed, bias, y);
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

/* ---- Winograd F(2x2, 3x3) transforms ------------------------------------------------------ */

size_t ck_winograd_scratch_count(int h, int w) {
    const int th = (h + 1) / 2, tw = (w + 1) / 2;
    return (size_t)2 * (2 * th + 2) * (tw + 1);
}

/* Row r of B^T d for the four window columns, then times B: (c0 - c2, c1 + c2, c2 - c1, c1 - c3). */
#define CK_WI_ROW(r, c0, c1, c2, c3)                                 \
    d[(4 * (r) + 0) * ks + bx] = (c0) - (c2);                       \
    d[(4 * (r) + 1) * ks + bx] = (c1) + (c2);                       \
    d[(4 * (r) + 2) * ks + bx] = (c2) - (c1);                       \
    d[(4 * (r) + 3) * ks + bx] = (c1) - (c3);

CK_INLINE void ck_wino_blocks(const float *restrict e, const float *restrict o, size_t half, int tw,
                              float *restrict d, size_t ks) {
    const float *e0 = e, *e1 = e0 + half, *e2 = e1 + half, *e3 = e2 + half;
    const float *o0 = o, *o1 = o0 + half, *o2 = o1 + half, *o3 = o2 + half;
    for (int bx = 0; bx < tw; bx++) {
        /* Window columns 0...3 are even[bx], odd[bx], even[bx + 1], odd[bx + 1]; B^T's rows are
           (r0 - r2, r1 + r2, r2 - r1, r1 - r3). */
        const float a0 = e0[bx] - e2[bx], a1 = e1[bx] + e2[bx], a2 = e2[bx] - e1[bx], a3 = e1[bx] - e3[bx];
        const float b0 = o0[bx] - o2[bx], b1 = o1[bx] + o2[bx], b2 = o2[bx] - o1[bx], b3 = o1[bx] - o3[bx];
        const float c0 = e0[bx + 1] - e2[bx + 1], c1 = e1[bx + 1] + e2[bx + 1], c2 = e2[bx + 1] - e1[bx + 1], c3 = e1[bx + 1] - e3[bx + 1];
        const float f0 = o0[bx + 1] - o2[bx + 1], f1 = o1[bx + 1] + o2[bx + 1], f2 = o2[bx + 1] - o1[bx + 1], f3 = o1[bx + 1] - o3[bx + 1];
        CK_WI_ROW(0, a0, b0, c0, f0)
        CK_WI_ROW(1, a1, b1, c1, f1)
        CK_WI_ROW(2, a2, b2, c2, f2)
        CK_WI_ROW(3, a3, b3, c3, f3)
    }
}

CK_INLINE void ck_wino_input(const float *x, long row, long column, int h, int w, float *v, size_t ks, float *s) {
    const int th = (h + 1) / 2, tw = (w + 1) / 2;
    const size_t half = (size_t)tw + 1, rows = (size_t)2 * th + 2;
    /* The zero-padded plane split by column parity: padded column 2i is even[i] (input column
       2i - 1), padded column 2i + 1 is odd[i] (input column 2i). */
    float *even = s, *odd = s + rows * half;
    memset(s, 0, sizeof(float) * 2 * rows * half);
    for (int y = 0; y < h; y++) {
        const float *src = x + y * row;
        float *e = even + (size_t)(y + 1) * half, *o = odd + (size_t)(y + 1) * half;
        for (int i = 0; 2 * i < w; i++) o[i] = src[2 * i * column];
        for (int i = 0; 2 * i + 1 < w; i++) e[i + 1] = src[(2 * i + 1) * column];
    }
    for (int by = 0; by < th; by++)
        ck_wino_blocks(even + (size_t)2 * by * half, odd + (size_t)2 * by * half, half, tw, v + (size_t)by * tw, ks);
}

/* Column j of A^T M: (m0j + m1j + m2j, m1j - m2j - m3j); the two output columns are then
   (j0 + j1 + j2, j1 - j2 - j3). */
#define CK_WO_LOAD(p, j, top, bottom)                                                      \
    const float top = (p)[(j) * ks + bx] + (p)[(4 + (j)) * ks + bx] + (p)[(8 + (j)) * ks + bx]; \
    const float bottom = (p)[(4 + (j)) * ks + bx] - (p)[(8 + (j)) * ks + bx] - (p)[(12 + (j)) * ks + bx];

/* One block row of one plane (planes == 1) or of two planes interleaved by column (planes == 2:
   plane p's column x at 2x + p); full blocks only (both output columns inside). */
CK_INLINE void ck_wino_out_row(const float *restrict m0, const float *restrict m1, size_t ks, int blocks, float bias,
                               float *restrict r0, float *restrict r1, int planes) {
    if (planes == 1) {
        for (int bx = 0; bx < blocks; bx++) {
            CK_WO_LOAD(m0, 0, t0, u0) CK_WO_LOAD(m0, 1, t1, u1) CK_WO_LOAD(m0, 2, t2, u2) CK_WO_LOAD(m0, 3, t3, u3)
            r0[2 * bx] = t0 + t1 + t2 + bias;
            r0[2 * bx + 1] = t1 - t2 - t3 + bias;
            if (r1) { r1[2 * bx] = u0 + u1 + u2 + bias; r1[2 * bx + 1] = u1 - u2 - u3 + bias; }
        }
    } else {
        for (int bx = 0; bx < blocks; bx++) {
            CK_WO_LOAD(m0, 0, t0, u0) CK_WO_LOAD(m0, 1, t1, u1) CK_WO_LOAD(m0, 2, t2, u2) CK_WO_LOAD(m0, 3, t3, u3)
            CK_WO_LOAD(m1, 0, p0, q0) CK_WO_LOAD(m1, 1, p1, q1) CK_WO_LOAD(m1, 2, p2, q2) CK_WO_LOAD(m1, 3, p3, q3)
            r0[4 * bx] = t0 + t1 + t2 + bias;
            r0[4 * bx + 1] = p0 + p1 + p2 + bias;
            r0[4 * bx + 2] = t1 - t2 - t3 + bias;
            r0[4 * bx + 3] = p1 - p2 - p3 + bias;
            if (r1) {
                r1[4 * bx] = u0 + u1 + u2 + bias;
                r1[4 * bx + 1] = q0 + q1 + q2 + bias;
                r1[4 * bx + 2] = u1 - u2 - u3 + bias;
                r1[4 * bx + 3] = q1 - q2 - q3 + bias;
            }
        }
    }
}

CK_INLINE void ck_wino_output(const float *m0, const float *m1, size_t ks, int h, int w, float bias, float *y, long row) {
    const int th = (h + 1) / 2, tw = (w + 1) / 2, full = w / 2, planes = m1 ? 2 : 1;
    for (int by = 0; by < th; by++) {
        float *r0 = y + (size_t)(2 * by) * row, *r1 = 2 * by + 1 < h ? r0 + row : NULL;
        const float *p0 = m0 + (size_t)by * tw, *p1 = m1 ? m1 + (size_t)by * tw : NULL;
        ck_wino_out_row(p0, p1, ks, full, bias, r0, r1, planes);
        if (full < tw) {
            /* The last block of an odd width: its left column only. */
            const int bx = full;
            for (int p = 0; p < planes; p++) {
                const float *q = p ? p1 : p0;
                CK_WO_LOAD(q, 0, t0, u0) CK_WO_LOAD(q, 1, t1, u1) CK_WO_LOAD(q, 2, t2, u2)
                r0[planes * 2 * bx + p] = t0 + t1 + t2 + bias;
                if (r1) r1[planes * 2 * bx + p] = u0 + u1 + u2 + bias;
            }
        }
    }
}

#ifdef CK_X86
CK_AVX512 static void ck_wino_input512(const float *x, long row, long column, int h, int w, float *v, size_t ks, float *s) {
    ck_wino_input(x, row, column, h, w, v, ks, s);
}
CK_AVX2 static void ck_wino_input256(const float *x, long row, long column, int h, int w, float *v, size_t ks, float *s) {
    ck_wino_input(x, row, column, h, w, v, ks, s);
}
CK_AVX512 static void ck_wino_output512(const float *m0, const float *m1, size_t ks, int h, int w, float bias, float *y, long row) {
    ck_wino_output(m0, m1, ks, h, w, bias, y, row);
}
CK_AVX2 static void ck_wino_output256(const float *m0, const float *m1, size_t ks, int h, int w, float bias, float *y, long row) {
    ck_wino_output(m0, m1, ks, h, w, bias, y, row);
}
#endif

void ck_winograd_input(int isa, const float *x, long row, long column, int h, int w, float *v, size_t kstride, float *scratch) {
#ifdef CK_X86
    if (isa == CK_ISA_AVX512) { ck_wino_input512(x, row, column, h, w, v, kstride, scratch); return; }
    if (isa == CK_ISA_AVX2) { ck_wino_input256(x, row, column, h, w, v, kstride, scratch); return; }
#endif
    (void)isa;
    ck_wino_input(x, row, column, h, w, v, kstride, scratch);
}

void ck_winograd_output(int isa, const float *m0, const float *m1, size_t kstride, int h, int w, float bias, float *y, long row) {
#ifdef CK_X86
    if (isa == CK_ISA_AVX512) { ck_wino_output512(m0, m1, kstride, h, w, bias, y, row); return; }
    if (isa == CK_ISA_AVX2) { ck_wino_output256(m0, m1, kstride, h, w, bias, y, row); return; }
#endif
    (void)isa;
    ck_wino_output(m0, m1, kstride, h, w, bias, y, row);
}
