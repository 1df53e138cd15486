/* Private: hand-written kernels, one table per instruction set, chosen at run time.
 *
 * A weight matrix W is [n × K] row-major in its stored dtype (F32, BF16, F16) and y = W x.
 * gemv_* compute out[r·ldo + i] = Σ_k W[i,k] · x[r·ldx + k] for i < n, r < R: the memory-bound
 * products of decode and of small batches, reading each weight row once for all R rows. Every table
 * computes the same sums in f32 (BF16 and F16 are widened exactly); only the summation order differs,
 * and each table is tested against the portable one. */
#ifndef T2_KERNELS_H
#define T2_KERNELS_H

#include <stddef.h>
#include <stdint.h>
#include <t2/safetensors.h>

typedef struct t2_weight {
    t2_dtype dtype;     /* F32, BF16 or F16 */
    int rows;           /* n: output features */
    int cols;           /* K: input features */
    const void *data;   /* [rows × cols], borrowed from the mmap */
} t2_weight;

typedef void (*t2_gemv_fn)(const void *w, int n, int K, const float *x, size_t ldx, int R, float *out, size_t ldo,
                           const uint16_t *xbf);

typedef struct t2_kernels {
    const char *name;                 /* "avx512bf16", "avx512", "avx2", "portable" */
    t2_gemv_fn gemv[3];               /* indexed by T2_F32, T2_F16, T2_BF16 */
    /* 1 if gemv[T2_BF16] wants x pre-split into three BF16 parts (xbf: [3][R][K], hi, mid, lo) so
     * that BF16 dot-product instructions reproduce the f32 product. */
    int bf16_split_x;
    /* 1 if the gemv kernels also beat OpenBLAS sgemm for many rows (prompt processing) on this ISA:
     * the 4×4 register-blocked AVX-512 kernels do (measured: 261 vs 218 GFLOP/s F32, 201 vs 153 BF16,
     * 128 rows, against Debian's OpenBLAS with its Haswell kernels); AVX2 and portable do not. */
    int own_gemm;
    void (*cvt_bf16)(const uint16_t *in, float *out, size_t n);
    void (*cvt_f16)(const uint16_t *in, float *out, size_t n);
    float (*dot)(const float *a, const float *b, int n);
    void (*axpy)(float a, const float *x, float *y, int n);    /* y += a·x */
} t2_kernels;

/* The widest table this CPU runs, or the one named by the environment variable T2_KERNELS
 * (portable, avx2, avx512, avx512bf16) if the CPU supports it. Borrowed, static. */
const t2_kernels *t2_kernels_best(void);
/* The table with this name if this CPU supports it, else NULL. Borrowed, static. */
const t2_kernels *t2_kernels_by_name(const char *name);

/* Per-ISA tables (NULL-returning getters when the compiler could not build them). */
const t2_kernels *t2_kernels_portable(void);
const t2_kernels *t2_kernels_avx2(void);
const t2_kernels *t2_kernels_avx512(void);
const t2_kernels *t2_kernels_avx512bf16(void);

/* BF16 weights × x rounded to BF16 (xbf: [R × K], t2_f32_to_bf16 of x), one vdpbf16ps per pair:
 * the numerics of a framework computing in bfloat16. Only on CPUs with AVX512-BF16 (check
 * t2_kernels_by_name("avx512bf16") first); used for prompts when asked (t2_model_params.prefill_bf16). */
void t2_gemv_bf16_x1_avx512bf16(const void *w, int n, int K, const float *x, size_t ldx, int R, float *out, size_t ldo,
                                const uint16_t *xbf);

/* x rounded to BF16 with vcvtneps2bf16 (round to nearest even; the instruction flushes subnormal
 * inputs to zero, which activations never are in practice). AVX512-BF16 CPUs only. */
void t2_round_bf16_avx512bf16(const float *x, size_t n, uint16_t *out);

/* Exact scalar conversions. */
static inline float t2_bf16_to_f32(uint16_t h) {
    union { uint32_t u; float f; } v = {.u = (uint32_t)h << 16};
    return v.f;
}
/* Round to nearest even (NaN stays NaN). */
static inline uint16_t t2_f32_to_bf16(float f) {
    union { float f; uint32_t u; } v = {.f = f};
    if ((v.u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((v.u >> 16) | 0x40);
    return (uint16_t)((v.u + 0x7fffu + ((v.u >> 16) & 1)) >> 16);
}
float t2_f16_to_f32(uint16_t h);

/* Split x into three BF16 parts whose sum is x to f32 precision: hi = bf16(x), mid = bf16(x - hi),
 * lo = bf16(x - hi - mid). out: [3 × n]. */
void t2_split_bf16(const float *x, size_t n, uint16_t *hi, uint16_t *mid, uint16_t *lo);

#endif
