/* eng_cuda.h — the MoE forward pass on a CUDA GPU (`moescope run --device cuda`).
 *
 * eng_cuda_ctx_init uploads the model once: every weight matrix as BF16 (F32/F16 checkpoints
 * are rounded to nearest even, BF16 is copied bit for bit, Q8_0/Q4_0 are dequantised then
 * rounded), norm weights, biases, router gates and small vectors as float32 (the router
 * matmul stays float32 so routing matches the CPU engine as closely as possible). The KV
 * cache lives on the device in float32. eng_cuda_forward runs embedding, every layer
 * (attention, router, permutation, grouped expert GEMMs, combine, shared expert) and the
 * lm_head on one stream with no per-layer host round trip (opt-in exception: the routed
 * experts on tensor cores, eng_cuda_set_expert_gemm below); routing (experts, weights and,
 * at record level full, probabilities and logits) is copied asynchronously into pinned
 * buffers and reported through the same probe hooks as the CPU engine (prb_probe.route)
 * after the batch's single stream sync, together with per-op GPU times from CUDA events
 * (prb_probe.op). Router policies other than the model's native softmax/sigmoid routers
 * (--route overrides, Switch capacity, hierarchical) run on the CPU between two kernels of
 * the layer (one sync per MoE layer), exactly as eng_policy.c defines them.
 *
 * Families: Mixtral, Qwen2-MoE, Qwen3-MoE, OLMoE (standard GQA attention with biases /
 * qk-norm / clip, softmax routers, shared experts, dense layers); DeepSeek-V2/V3 (MLA
 * attention: q LoRA, compressed KV + decoupled RoPE with YaRN, keys/values cached
 * decompressed per head, qk dim != v dim; group-limited softmax and sigmoid + bias group
 * routers, shared experts, dense first layers); gpt-oss (attention sinks, alternating
 * sliding window, YaRN, router bias with top-k on logits then softmax, experts with biases
 * and the clamped SwiGLU). Every op mirrors the CPU engine (eng_attn.c, eng_moe.c).
 *
 * Compiled in every build; without CUDA every entry point fails with a clear message. */
#ifndef MOESCOPE_ENG_CUDA_H
#define MOESCOPE_ENG_CUDA_H

#include "engine/eng_model.h"
#include "engine/eng_policy.h"
#include "engine/eng_session.h"
#include "probes/prb_probe.h"

#include <stddef.h>
#include <stdint.h>

typedef struct eng_cuda_ctx eng_cuda_ctx;

/* 1 when this build has the CUDA backend and a device is visible; else 0 with a one-line
 * reason in err. */
int eng_cuda_available(char *err, size_t errlen);

/* Uploads the model and allocates the device KV cache for max_ctx tokens and batches of up
 * to max_batch tokens. 0 or -1 (+err). */
int eng_cuda_ctx_init(eng_cuda_ctx **out, const eng_model *m, eng_policy *policy, prb_probe probe, int max_ctx,
                      int max_batch, char *err, size_t errlen);
void eng_cuda_ctx_free(eng_cuda_ctx *c);
void eng_cuda_ctx_reset(eng_cuda_ctx *c);     /* empties the KV cache */
int eng_cuda_max_batch(const eng_cuda_ctx *c);
int eng_cuda_max_ctx(const eng_cuda_ctx *c);
const char *eng_cuda_device_name(const eng_cuda_ctx *c);
size_t eng_cuda_weight_bytes(const eng_cuda_ctx *c);     /* bytes of weights on the device */
/* Test/bench knobs: dense linear mode (KRN_LIN_*, 0 auto) and attention kernel (0 auto,
 * 1 prefill kernel, 2 decode kernel). */
void eng_cuda_set_modes(eng_cuda_ctx *c, int linear_mode, int attn_kind);

/* Routed-expert GEMMs (`moescope run --device cuda --expert-gemm own|cublas`, env
 * MOESCOPE_EXPERT_GEMM read by eng_cuda_ctx_init): OWN = the grouped fp32 kernels of
 * krn_cuda_gemm.cu (default; activations stay float32); CUBLAS = tensor cores through
 * krn_cuda_grouped_linear_tc (activations rounded to BF16, F32 accumulation; one host sync
 * per MoE layer for the group sizes), AUTO picking the grouped cuBLAS call, or forced to
 * the grouped call (CUBLAS_GROUPED, "cublas-grouped") / per-expert calls (CUBLAS_PER_GROUP,
 * "cublas-pergroup") for the bench. */
enum { ENG_EXPERT_GEMM_OWN = 0, ENG_EXPERT_GEMM_CUBLAS = 1, ENG_EXPERT_GEMM_CUBLAS_GROUPED = 2,
       ENG_EXPERT_GEMM_CUBLAS_PER_GROUP = 3 };
/* "own", "cublas", "cublas-grouped", "cublas-pergroup" -> ENG_EXPERT_GEMM_*, or -1. */
int eng_cuda_expert_gemm_parse(const char *s);
const char *eng_cuda_expert_gemm_name(int mode);
/* Selects the expert GEMM path (allocates its BF16 scratch on first use). 0 or -1 (+err). */
int eng_cuda_set_expert_gemm(eng_cuda_ctx *c, int mode, char *err, size_t errlen);

/* Same contract as eng_forward (eng_forward.h): n tokens continuing the KV cache;
 * want_logits ENG_LOGITS_NONE / LAST / ALL into logits (host). Returns the batch id or -1. */
int64_t eng_cuda_forward(eng_cuda_ctx *c, const int *ids, int n, int want_logits, float *logits, int seq_id,
                         int abs_pos0, char *err, size_t errlen);

/* eng_score / eng_generate (eng_session.h) on the GPU context; same arguments and probe
 * reporting. Greedy generation picks the next token on the device (argmax kernel). */
int eng_cuda_score(eng_cuda_ctx *c, const int *ids, int n, int window, int seq_id, float *nll_out,
                   eng_score_result *res, eng_logits_cb cb, void *cb_user, char *err, size_t errlen);
int eng_cuda_generate(eng_cuda_ctx *c, const int *prompt, int n_prompt, int n_new, const eng_sampler *s, int stop_id,
                      int seq_id, int *out_ids, int *n_out, eng_token_cb tok_cb, void *tok_user, eng_logits_cb cb,
                      void *cb_user, char *err, size_t errlen);

#endif
