/* t2/rng.h — the engine's random numbers: xoshiro256** seeded through splitmix64. Small, fast and
 * reproducible from a 64-bit seed; one t2_rng per stream (not thread-safe: one owner). */
#ifndef T2_RNG_H
#define T2_RNG_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct t2_rng {
    uint64_t s[4];
} t2_rng;

/* Start the stream from seed (any value, 0 included). */
void t2_rng_seed(t2_rng *r, uint64_t seed);
/* 64 random bits. */
uint64_t t2_rng_u64(t2_rng *r);
/* Uniform in [0, 1) with 53 random bits. */
double t2_rng_uniform(t2_rng *r);
/* Standard normal (Box-Muller). */
double t2_rng_normal(t2_rng *r);

#ifdef __cplusplus
}
#endif
#endif
