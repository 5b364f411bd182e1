/* eng_synth.h — `moescope synth`: writes a random Hugging Face-layout MoE model of any
 * supported family (Mixtral by default) with planted routing structure, for tests and demos.
 *
 * Families: every family is written with its HF config fields and tensor names (so
 * transformers could load it); sizes come from the options (intermediate = per routed expert
 * width). qwen2_moe: q/k/v biases, shared expert (2 x intermediate) with its sigmoid gate,
 * layer 1 dense (mlp_only_layers) when there are >= 3 layers; qwen3_moe: per-head q/k norms,
 * norm_topk_prob; olmoe: full q/k norms; deepseek_v2: MLA without q LoRA, group_limited_greedy,
 * YaRN, layer 0 dense, 2 shared experts; deepseek_v3: MLA with q LoRA, sigmoid + bias + groups,
 * YaRN with mscale, layer 0 dense; gpt_oss: attention sinks, alternating sliding window (4),
 * biases, packed interleaved experts, YaRN. switch and hierarchical are Mixtral-layout models
 * whose config.json adds "moescope_router" ({"kind":"switch","capacity_factor":1} with k=1, or
 * {"kind":"hierarchical","n_groups":2} with a group_gate [2,H] per layer): synthetic-only
 * routers that transformers would load as plain Mixtral. --plant works for mixtral, switch and
 * hierarchical.
 *
 * Output folder: config.json (HF MixtralConfig fields + a "moescope_synth" object that
 * describes the planted structure exactly), model.safetensors (HF Mixtral tensor names),
 * tokenizer.json (byte-level BPE: GPT-2's 256 byte tokens, merges learned on a built-in
 * paragraph, "<|endoftext|>" = vocab-1 as bos/eos), tokenizer_config.json and
 * generation_config.json. Output is a pure function of the options (own PRNG, no libm in
 * the random draws), so the same seed gives the same bytes on every machine.
 *
 * Construction (why the plant survives the real forward pass): embeddings ~N(0,1) dominate
 * the residual stream; attention and expert weights are small, so rmsnorm(x) at every layer
 * is close to rmsnorm(embedding). A few hidden dims are "signal" dims:
 *  - collapse: every embedding row has +4 on dim 0; in planted layers the gate rows of the
 *    chosen collapse experts get +3 on dim 0 (router logit ~ +10 over the rest), so they are
 *    in the top-k of almost every token; gates elsewhere are random, equal-norm, 0 on dim 0.
 *  - specialization: the vocab is split into E contiguous id ranges; tokens of range r have
 *    +4 on dim 1+r (0 on the other signal dims); gate row r has +3 on dim 1+r in planted
 *    layers, so tokens of range r put expert r in their top-k.
 *  - none: random equal-norm gate rows (roughly balanced routing).
 */
#ifndef MOESCOPE_ENG_SYNTH_H
#define MOESCOPE_ENG_SYNTH_H

#include <stddef.h>

typedef struct eng_synth_opts {
  const char *family;       /* mixtral | qwen2_moe | qwen3_moe | olmoe | deepseek_v2 | deepseek_v3 |
                               gpt_oss | switch | hierarchical (see below) */
  int layers, experts, top_k, hidden, vocab, heads, kv_heads, intermediate, max_pos;
  const char *plant;        /* "none" | "specialization" | "collapse" */
  const char *plant_layers; /* "1,3", "all", or NULL = default (collapse: odd layers, or
                               layer 0 when there is only one; specialization: all) */
  int collapse_experts;     /* experts that take the tokens in collapsed layers (default 1) */
  unsigned long long seed;
  const char *dtype;        /* "f32" (default) | "bf16" | "f16" (also float32/bfloat16/float16) */
} eng_synth_opts;

/* layers 4, experts 8, top_k 2, hidden 64, vocab 512, heads 4, kv_heads 2, intermediate 128,
 * max_pos 512, plant "none", plant_layers NULL, collapse_experts 1, seed 1, dtype "f32". */
void eng_synth_defaults(eng_synth_opts *o);

/* Checks the options without writing anything. 0, or -1 with one line in err. */
int eng_synth_validate(const eng_synth_opts *o, char *err, size_t errlen);

/* Creates outdir (and parents) when missing and writes the model there; each file is written
 * atomically. Returns 0, or -1 with one clear line in err. */
int eng_synth_write(const eng_synth_opts *o, const char *outdir, char *err, size_t errlen);

/* Planted constants (also recorded in config.json moescope_synth). */
#define ENG_SYNTH_SIGNAL 4.0f   /* embedding value on a signal dim */
#define ENG_SYNTH_GATE 3.0f     /* gate weight on a signal dim in planted layers */

#endif
