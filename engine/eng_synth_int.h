/* eng_synth_int.h — internal to `moescope synth` (eng_synth.c: Mixtral layout, planted
 * structure, tokenizer; eng_synth_family.c: the other families): the deterministic PRNG and
 * the shared writers. Not a public interface. */
#ifndef MOESCOPE_ENG_SYNTH_INT_H
#define MOESCOPE_ENG_SYNTH_INT_H

#include <stdint.h>
#include <string.h>
#include <strings.h>

#include <cjson/cJSON.h>

#include "engine/eng_synth.h"

/* Families `synth --family` knows. Mixtral, switch and hierarchical share the Mixtral
 * tensor layout (eng_synth.c); the others are written by eng_synth_family.c. */
enum { SYN_MIXTRAL = 0, SYN_QWEN2_MOE, SYN_QWEN3_MOE, SYN_OLMOE, SYN_DEEPSEEK_V2, SYN_DEEPSEEK_V3, SYN_GPT_OSS,
       SYN_SWITCH, SYN_HIER, SYN_COUNT };
static inline int eng_synth__family(const char *f) {
  static const char *n[] = {"mixtral", "qwen2_moe", "qwen3_moe", "olmoe", "deepseek_v2", "deepseek_v3", "gpt_oss",
                            "switch", "hierarchical"};
  for (int i = 0; f && i < SYN_COUNT; i++) if (!strcasecmp(f, n[i])) return i;
  return -1;
}

/* ---- PRNG: splitmix64, one stream per tensor (seeded from the seed and the tensor name, so
 * the draw order of other tensors does not matter); normals are Irwin-Hall (sum of 12
 * uniforms - 6), pure arithmetic, so files are bit-identical across libm versions. */
typedef struct { uint64_t s; } rng_t;
static inline uint64_t splitmix64(uint64_t *s) {
  uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
static inline double rng_unif(rng_t *r) { return (double)(splitmix64(&r->s) >> 11) * 0x1.0p-53; }
static inline double rng_norm(rng_t *r) {
  double s = 0;
  for (int i = 0; i < 12; i++) s += rng_unif(r);
  return s - 6.0;
}
static inline rng_t rng_for(uint64_t seed, const char *name) {
  uint64_t h = 0xCBF29CE484222325ull;                     /* FNV-1a of the name */
  for (const unsigned char *p = (const unsigned char *)name; *p; p++) h = (h ^ *p) * 0x100000001B3ull;
  rng_t r = {seed ^ h};
  splitmix64(&r.s);
  return r;
}

int eng_synth__tokenizer(const eng_synth_opts *o, const char *dir, int *n_merges_out, char *err, size_t errlen);
int eng_synth__json(const char *dir, const char *file, cJSON *j, char *err, size_t errlen);
int eng_synth__mkdirs(const char *dir, char *err, size_t errlen);
int eng_synth__generation_config(const eng_synth_opts *o, const char *dir, char *err, size_t errlen);
int eng_synth__family_validate(const eng_synth_opts *o, int fam, char *err, size_t errlen);
int eng_synth__family_write(const eng_synth_opts *o, int fam, const char *outdir, char *err, size_t errlen);

#endif
