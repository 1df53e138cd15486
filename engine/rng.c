/* xoshiro256** (Blackman and Vigna): 256 bits of state, period 2^256 − 1, passes BigCrush; the state is
 * filled from the seed by splitmix64 so that nearby seeds give unrelated streams. */
#include <math.h>
#include <t2/rng.h>

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

void t2_rng_seed(t2_rng *r, uint64_t seed) {
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&seed);
}

uint64_t t2_rng_u64(t2_rng *r) {
    uint64_t *s = r->s, out = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return out;
}

double t2_rng_uniform(t2_rng *r) { return (double)(t2_rng_u64(r) >> 11) * 0x1.0p-53; }

double t2_rng_normal(t2_rng *r) {
    double u = t2_rng_uniform(r), v = t2_rng_uniform(r);
    return sqrt(-2.0 * log(1.0 - u)) * cos(2 * M_PI * v);
}
