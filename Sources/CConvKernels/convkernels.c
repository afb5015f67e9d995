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

/* 16 floats as one value (one zmm under AVX-512, two ymm under AVX2, four xmm otherwise), loaded
   and stored unaligned: the transforms below are written once over it and compiled per instruction set. */
typedef float ck_vf __attribute__((vector_size(64), aligned(4), may_alias));
enum { CK_VL = 16 };
#define CK_VLD(ptr) (*(const ck_vf *)(ptr))
#define CK_VST(ptr, val) (*(ck_vf *)(ptr) = (val))
#define CK_SLD(ptr) (*(ptr))
#define CK_SST(ptr, val) (*(ptr) = (val))

/* ev[i] = src[2i], od[i] = src[2i + 1] for i < n: whole vectors by two shuffles, the rest one by one. */
CK_INLINE void ck_deinterleave(const float *restrict src, int n, float *restrict ev, float *restrict od) {
    int i = 0;
#if defined(__clang__)
    for (; i + CK_VL <= n; i += CK_VL) {
        const ck_vf a = CK_VLD(src + 2 * i), b = CK_VLD(src + 2 * i + CK_VL);
        CK_VST(ev + i, __builtin_shufflevector(a, b, 0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30));
        CK_VST(od + i, __builtin_shufflevector(a, b, 1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31));
    }
#endif
    for (; i < n; i++) { ev[i] = src[2 * i]; od[i] = src[2 * i + 1]; }
}

/* dst[i] = src[2i] for i < n, never reading past src[2n - 2]. */
CK_INLINE void ck_evens(const float *restrict src, int n, float *restrict dst) {
    int i = 0;
#if defined(__clang__)
    for (; i + CK_VL < n; i += CK_VL) {
        const ck_vf a = CK_VLD(src + 2 * i), b = CK_VLD(src + 2 * i + CK_VL);
        CK_VST(dst + i, __builtin_shufflevector(a, b, 0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30));
    }
#endif
    for (; i < n; i++) dst[i] = src[2 * i];
}

size_t ck_winograd_scratch_count(int h, int w) {
    const int th = (h + 1) / 2, tw = (w + 1) / 2;
    return (size_t)8 * (th + 1) * tw + 2 * (size_t)tw + 4;
}

/* The input transform runs over every block of a plane at once (one flat loop the compiler
   vectorises whatever the plane's width): the zero-padded plane is first spread into eight
   arrays X[p][j] of (th + 1) rows x tw, X[p][j][y * tw + bx] = padded pixel (2y + p, 2bx + j), so
   that window row i, column j of every block b = by * tw + bx lies at X[i % 2][j][b + (i / 2) * tw]. */
CK_INLINE void ck_wino_input(const float *x, long row, long column, int h, int w, float *v, size_t ks, float *s) {
    const int th = (h + 1) / 2, tw = (w + 1) / 2;
    const size_t plane = (size_t)(th + 1) * tw, n = (size_t)th * tw;
    float *rb = s + 8 * plane; /* one padded input row: rb[i] is input column i - 1 */
    for (int i = 0; i < 2 * tw + 4; i++) rb[i] = 0;
    for (int pr = 0; pr < 2 * th + 2; pr++) {
        float *d0 = s + (size_t)(pr & 1) * 4 * plane + (size_t)(pr >> 1) * tw;
        float *restrict d1 = d0 + plane, *restrict d2 = d1 + plane, *restrict d3 = d2 + plane;
        const int yin = pr - 1;
        if (yin < 0 || yin >= h) {
            memset(d0, 0, sizeof(float) * tw); memset(d1, 0, sizeof(float) * tw);
            memset(d2, 0, sizeof(float) * tw); memset(d3, 0, sizeof(float) * tw);
            continue;
        }
        const float *src = x + yin * row;
        if (column == 1) memcpy(rb + 1, src, sizeof(float) * w);
        else if (column == 2) ck_evens(src, w, rb + 1);
        else for (int i = 0; i < w; i++) rb[i + 1] = src[i * column];
        ck_deinterleave(rb, tw, d0, d1);
        ck_deinterleave(rb + 2, tw, d2, d3);
    }
    const float *p[8];
    float *d[16];
    for (int k = 0; k < 8; k++) p[k] = s + k * plane;
    for (int k = 0; k < 16; k++) d[k] = v + k * ks;
    /* Column j of B^T d (rows r0 - r2, r1 + r2, r2 - r1, r1 - r3), window rows 0 and 2 from
       X[0][j], 1 and 3 from X[1][j]; then each row times B: (t0 - t2, t1 + t2, t2 - t1, t1 - t3). */
#define CK_WI_COL(T, LD, j)                                                                         \
    const T r0##j = LD(p[j] + b), r1##j = LD(p[4 + j] + b), r2##j = LD(p[j] + b + tw), r3##j = LD(p[4 + j] + b + tw); \
    const T a##j = r0##j - r2##j, c##j = r1##j + r2##j, e##j = r2##j - r1##j, f##j = r1##j - r3##j;
#define CK_WI_BODY(T, LD, ST)                                                                        \
    {                                                                                                \
        CK_WI_COL(T, LD, 0) CK_WI_COL(T, LD, 1) CK_WI_COL(T, LD, 2) CK_WI_COL(T, LD, 3)             \
        ST(d[0] + b, a0 - a2); ST(d[1] + b, a1 + a2); ST(d[2] + b, a2 - a1); ST(d[3] + b, a1 - a3);  \
        ST(d[4] + b, c0 - c2); ST(d[5] + b, c1 + c2); ST(d[6] + b, c2 - c1); ST(d[7] + b, c1 - c3);  \
        ST(d[8] + b, e0 - e2); ST(d[9] + b, e1 + e2); ST(d[10] + b, e2 - e1); ST(d[11] + b, e1 - e3); \
        ST(d[12] + b, f0 - f2); ST(d[13] + b, f1 + f2); ST(d[14] + b, f2 - f1); ST(d[15] + b, f1 - f3); \
    }
    size_t b = 0;
    for (; b + CK_VL <= n; b += CK_VL) CK_WI_BODY(ck_vf, CK_VLD, CK_VST)
    for (; b < n; b++) CK_WI_BODY(float, CK_SLD, CK_SST)
#undef CK_WI_BODY
#undef CK_WI_COL
}

/* The output transform, A^T M A + bias, also over all blocks of a plane: 64 blocks at a time into
   four arrays (the block's top-left, top-right, bottom-left, bottom-right output), then written
   into the plane row by row (one plane, or two interleaved by column), clipped to h x w. */
enum { CK_WO_CHUNK = 64 };

CK_INLINE void ck_wino_out_chunk(const float *m, size_t ks, size_t cn, float bias, float *t) {
#define CK_WO_COL(T, LD, j)                                                                         \
    const T z0##j = LD(m + (j) * ks + b) + LD(m + (4 + (j)) * ks + b) + LD(m + (8 + (j)) * ks + b);  \
    const T z1##j = LD(m + (4 + (j)) * ks + b) - LD(m + (8 + (j)) * ks + b) - LD(m + (12 + (j)) * ks + b);
#define CK_WO_BODY(T, LD, ST)                                                                        \
    {                                                                                                \
        CK_WO_COL(T, LD, 0) CK_WO_COL(T, LD, 1) CK_WO_COL(T, LD, 2) CK_WO_COL(T, LD, 3)             \
        ST(t + b, z00 + z01 + z02 + bias);                                                           \
        ST(t + CK_WO_CHUNK + b, z01 - z02 - z03 + bias);                                             \
        ST(t + 2 * CK_WO_CHUNK + b, z10 + z11 + z12 + bias);                                         \
        ST(t + 3 * CK_WO_CHUNK + b, z11 - z12 - z13 + bias);                                         \
    }
    size_t b = 0;
    for (; b + CK_VL <= cn; b += CK_VL) CK_WO_BODY(ck_vf, CK_VLD, CK_VST)
    for (; b < cn; b++) CK_WO_BODY(float, CK_SLD, CK_SST)
#undef CK_WO_BODY
#undef CK_WO_COL
}

CK_INLINE void ck_wino_output(const float *m0, const float *m1, size_t ks, int h, int w, float bias, float *y, long row) {
    const int th = (h + 1) / 2, tw = (w + 1) / 2, full = w / 2;
    const size_t n = (size_t)th * tw;
    float t0[4 * CK_WO_CHUNK], t1[4 * CK_WO_CHUNK];
    for (size_t b0 = 0; b0 < n; b0 += CK_WO_CHUNK) {
        const size_t cn = n - b0 < CK_WO_CHUNK ? n - b0 : CK_WO_CHUNK;
        ck_wino_out_chunk(m0 + b0, ks, cn, bias, t0);
        if (m1) ck_wino_out_chunk(m1 + b0, ks, cn, bias, t1);
        size_t b = b0;
        while (b < b0 + cn) {
            const int by = (int)(b / tw), bx0 = (int)(b % tw);
            const int bx1 = (size_t)(tw - bx0) < b0 + cn - b ? tw : bx0 + (int)(b0 + cn - b);
            const int end = bx1 < full ? bx1 : full;
            float *r0 = y + (size_t)(2 * by) * row, *r1 = 2 * by + 1 < h ? r0 + row : NULL;
            const float *q = t0 + (b - b0) - bx0, *u = t1 + (b - b0) - bx0;
            if (!m1) {
                for (int bx = bx0; bx < end; bx++) { r0[2 * bx] = q[bx]; r0[2 * bx + 1] = q[CK_WO_CHUNK + bx]; }
                if (r1) for (int bx = bx0; bx < end; bx++) {
                    r1[2 * bx] = q[2 * CK_WO_CHUNK + bx]; r1[2 * bx + 1] = q[3 * CK_WO_CHUNK + bx];
                }
                if (bx1 > full) { /* the last block of an odd width: its left column only */
                    r0[2 * full] = q[full];
                    if (r1) r1[2 * full] = q[2 * CK_WO_CHUNK + full];
                }
            } else {
                for (int bx = bx0; bx < end; bx++) {
                    r0[4 * bx] = q[bx]; r0[4 * bx + 1] = u[bx];
                    r0[4 * bx + 2] = q[CK_WO_CHUNK + bx]; r0[4 * bx + 3] = u[CK_WO_CHUNK + bx];
                }
                if (r1) for (int bx = bx0; bx < end; bx++) {
                    r1[4 * bx] = q[2 * CK_WO_CHUNK + bx]; r1[4 * bx + 1] = u[2 * CK_WO_CHUNK + bx];
                    r1[4 * bx + 2] = q[3 * CK_WO_CHUNK + bx]; r1[4 * bx + 3] = u[3 * CK_WO_CHUNK + bx];
                }
                if (bx1 > full) {
                    r0[4 * full] = q[full]; r0[4 * full + 1] = u[full];
                    if (r1) { r1[4 * full] = q[2 * CK_WO_CHUNK + full]; r1[4 * full + 1] = u[2 * CK_WO_CHUNK + full]; }
                }
            }
            b += bx1 - bx0;
        }
    }
}

/* The transform of the weight gradient: each 2 x 2 block of an output gradient dy (zero past
   h x w) becomes the 16 entries of A dy A^T, entry k at g[k * ks + by * tw + bx]; with the input
   transform's B^T d B they give the gradient of the transformed kernel, entry by entry. Spread
   into four arrays D[i][j][b] = dy(2by + i, 2bx + j) first, then one vector loop over all blocks. */
CK_INLINE void ck_wino_grad(const float *dy, long row, long column, int h, int w, float *g, size_t ks, float *s) {
    const int th = (h + 1) / 2, tw = (w + 1) / 2;
    const size_t n = (size_t)th * tw;
    float *q[4] = { s, s + n, s + 2 * n, s + 3 * n };
    for (int by = 0; by < th; by++) {
        for (int i = 0; i < 2; i++) {
            float *d0 = q[2 * i] + (size_t)by * tw, *d1 = q[2 * i + 1] + (size_t)by * tw;
            const int y = 2 * by + i;
            if (y >= h) { memset(d0, 0, sizeof(float) * tw); memset(d1, 0, sizeof(float) * tw); continue; }
            const float *src = dy + y * row;
            if (column == 1) ck_deinterleave(src, w / 2, d0, d1);
            else for (int bx = 0; bx < w / 2; bx++) { d0[bx] = src[2 * bx * column]; d1[bx] = src[(2 * bx + 1) * column]; }
            if (w & 1) { d0[tw - 1] = src[(w - 1) * column]; d1[tw - 1] = 0; }
        }
    }
    float *d[16];
    for (int k = 0; k < 16; k++) d[k] = g + k * ks;
    /* A dy: rows (a, b), (a + c, b + d), (a - c, b - d), (-c, -d) for dy = [a b; c d]; then each
       row (x, y) times A^T: (x, x + y, x - y, -y). */
#define CK_WG_ROW(ST, r, x, y) ST(d[4 * (r)] + b, x); ST(d[4 * (r) + 1] + b, (x) + (y)); ST(d[4 * (r) + 2] + b, (x) - (y)); ST(d[4 * (r) + 3] + b, -(y));
#define CK_WG_BODY(T, LD, ST)                                                                         \
    {                                                                                                \
        const T a = LD(q[0] + b), bb = LD(q[1] + b), c = LD(q[2] + b), dd = LD(q[3] + b);            \
        const T s0 = a + c, s1 = bb + dd, t0 = a - c, t1 = bb - dd, u0 = -c, u1 = -dd;              \
        CK_WG_ROW(ST, 0, a, bb) CK_WG_ROW(ST, 1, s0, s1) CK_WG_ROW(ST, 2, t0, t1) CK_WG_ROW(ST, 3, u0, u1) \
    }
    size_t b = 0;
    for (; b + CK_VL <= n; b += CK_VL) CK_WG_BODY(ck_vf, CK_VLD, CK_VST)
    for (; b < n; b++) CK_WG_BODY(float, CK_SLD, CK_SST)
#undef CK_WG_BODY
#undef CK_WG_ROW
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
CK_AVX512 static void ck_wino_grad512(const float *dy, long row, long column, int h, int w, float *g, size_t ks, float *s) {
    ck_wino_grad(dy, row, column, h, w, g, ks, s);
}
CK_AVX2 static void ck_wino_grad256(const float *dy, long row, long column, int h, int w, float *g, size_t ks, float *s) {
    ck_wino_grad(dy, row, column, h, w, g, ks, s);
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

void ck_winograd_gradient(int isa, const float *dy, long row, long column, int h, int w, float *g, size_t kstride, float *scratch) {
#ifdef CK_X86
    if (isa == CK_ISA_AVX512) { ck_wino_grad512(dy, row, column, h, w, g, kstride, scratch); return; }
    if (isa == CK_ISA_AVX2) { ck_wino_grad256(dy, row, column, h, w, g, kstride, scratch); return; }
#endif
    (void)isa;
    ck_wino_grad(dy, row, column, h, w, g, kstride, scratch);
}
