/* eng_gguf_names.h — internal to eng_gguf_*.c: llama.cpp <-> Hugging Face names, and the
 * few conventions the GGUF writer and reader must agree on.
 *
 * llama.cpp (llama-arch.cpp LLM_TENSOR_NAMES, gguf-py constants.py) names a tensor
 * "blk.N.<part>.weight|bias"; Hugging Face "model.layers.N.<module>.weight|bias". The
 * table maps the per-layer parts; `hf_mixtral` is Mixtral's spelling where it differs
 * from the generic one (Qwen2-MoE / Qwen3-MoE / OLMoE / DeepSeek use mlp.*), `hf_deepseek`
 * DeepSeek's (shared experts are mlp.shared_experts.*, Qwen2-MoE's mlp.shared_expert.*).
 * An entry with `arch` set applies to that general.architecture only and is preferred
 * there in both directions (gpt-oss: post_attention_norm, mlp.router).
 */
#ifndef MOESCOPE_ENG_GGUF_NAMES_H
#define MOESCOPE_ENG_GGUF_NAMES_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct { const char *gguf, *hf, *hf_mixtral, *hf_deepseek, *arch; } eng_gguf_name;

static const eng_gguf_name eng_gguf_layer_names[] = {
  {"post_attention_norm.weight", "post_attention_layernorm.weight", 0, 0, "gpt-oss"},
  {"ffn_gate_inp.weight", "mlp.router.weight", 0, 0, "gpt-oss"},
  {"attn_norm.weight", "input_layernorm.weight", 0, 0, 0},
  {"attn_q.weight", "self_attn.q_proj.weight", 0, 0, 0},
  {"attn_k.weight", "self_attn.k_proj.weight", 0, 0, 0},
  {"attn_v.weight", "self_attn.v_proj.weight", 0, 0, 0},
  {"attn_q.bias", "self_attn.q_proj.bias", 0, 0, 0},
  {"attn_k.bias", "self_attn.k_proj.bias", 0, 0, 0},
  {"attn_v.bias", "self_attn.v_proj.bias", 0, 0, 0},
  {"attn_output.weight", "self_attn.o_proj.weight", 0, 0, 0},
  {"attn_output.bias", "self_attn.o_proj.bias", 0, 0, 0},
  {"attn_q_norm.weight", "self_attn.q_norm.weight", 0, 0, 0},
  {"attn_k_norm.weight", "self_attn.k_norm.weight", 0, 0, 0},
  {"attn_q_a.weight", "self_attn.q_a_proj.weight", 0, 0, 0},
  {"attn_q_a_norm.weight", "self_attn.q_a_layernorm.weight", 0, 0, 0},
  {"attn_q_b.weight", "self_attn.q_b_proj.weight", 0, 0, 0},
  {"attn_kv_a_mqa.weight", "self_attn.kv_a_proj_with_mqa.weight", 0, 0, 0},
  {"attn_kv_a_norm.weight", "self_attn.kv_a_layernorm.weight", 0, 0, 0},
  {"attn_kv_b.weight", "self_attn.kv_b_proj.weight", 0, 0, 0},
  {"attn_sinks.weight", "self_attn.sinks", 0, 0, 0},
  {"ffn_norm.weight", "post_attention_layernorm.weight", 0, 0, 0},
  {"post_attention_norm.weight", "post_attention_layernorm.weight", 0, 0, 0},
  {"ffn_gate_inp.weight", "mlp.gate.weight", "block_sparse_moe.gate.weight", 0, 0},
  {"ffn_gate_inp.bias", "mlp.router.bias", 0, 0, 0},
  {"exp_probs_b.bias", "mlp.gate.e_score_correction_bias", 0, 0, 0},
  {"ffn_gate_inp_shexp.weight", "mlp.shared_expert_gate.weight", 0, 0, 0},
  {"ffn_gate_shexp.weight", "mlp.shared_expert.gate_proj.weight", 0, "mlp.shared_experts.gate_proj.weight", 0},
  {"ffn_up_shexp.weight", "mlp.shared_expert.up_proj.weight", 0, "mlp.shared_experts.up_proj.weight", 0},
  {"ffn_down_shexp.weight", "mlp.shared_expert.down_proj.weight", 0, "mlp.shared_experts.down_proj.weight", 0},
  {"ffn_gate.weight", "mlp.gate_proj.weight", 0, 0, 0},
  {"ffn_up.weight", "mlp.up_proj.weight", 0, 0, 0},
  {"ffn_down.weight", "mlp.down_proj.weight", 0, 0, 0},
  {0, 0, 0, 0, 0},
};

/* Stacked experts: GGUF blk.N.ffn_<part>_exps.weight, ne = [cols, rows, E]; gpt-oss also
 * has blk.N.ffn_<part>_exps.bias, ne = [rows, E] (HF per expert: mlp.experts.E.<part>.bias,
 * the names the engine's per-expert gpt-oss loader reads). */
static const char *const eng_gguf_exps[3] = {"ffn_gate_exps.weight", "ffn_up_exps.weight", "ffn_down_exps.weight"};
static const char *const eng_gguf_exps_bias[3] = {"ffn_gate_exps.bias", "ffn_up_exps.bias", "ffn_down_exps.bias"};
static const char *const eng_gguf_exp_hf[3] = {"gate_proj", "up_proj", "down_proj"};
static const char *const eng_gguf_exp_mixtral[3] = {"w1", "w3", "w2"};

/* DeepSeek MLA, newer llama.cpp: kv_b_proj [n_head*(nope+v), kv_lora] written as
 * attn_k_b (torch [n_head, kv_lora, nope] = per-head K part transposed; ne = [nope,
 * kv_lora, n_head]) and attn_v_b (torch [n_head, v, kv_lora]; ne = [kv_lora, v, n_head]). */
#define ENG_GGUF_K_B "attn_k_b.weight"
#define ENG_GGUF_V_B "attn_v_b.weight"

/* model_type <-> general.architecture */
static const char *const eng_gguf_arch_map[][2] = {
  {"mixtral", "llama"}, {"qwen2_moe", "qwen2moe"}, {"qwen3_moe", "qwen3moe"}, {"olmoe", "olmoe"},
  {"deepseek_v2", "deepseek2"}, {"deepseek_v3", "deepseek2"}, {"gpt_oss", "gpt-oss"}, {0, 0},
};

/* moescope.* keys for what llama.cpp's metadata cannot say; the writer adds one only when
 * the llama.cpp keys (read as eng_gguf_config_json reads them) would give another value. */
#define ENG_GGUF_KEY_YARN_MSCALE "moescope.rope.scaling.yarn_mscale"
#define ENG_GGUF_KEY_YARN_MSCALE_ALL "moescope.rope.scaling.yarn_mscale_all_dim"
#define ENG_GGUF_KEY_YARN_TRUNCATE "moescope.rope.scaling.yarn_truncate"
#define ENG_GGUF_KEY_SWIGLU_LIMIT "moescope.swiglu_limit"
#define ENG_GGUF_KEY_SLIDING_LAYERS "moescope.attention.sliding_layers"
#define ENG_GGUF_KEY_TOPK_METHOD "moescope.topk_method"
#define ENG_GGUF_KEY_ROPE_INTERLEAVE "moescope.rope_interleave"

/* gpt-oss defaults a reader assumes when the file does not say (llama.cpp hard-codes them):
 * SwiGLU clamp 7.0, sliding window on even layers (swa pattern 2), YaRN without rounding
 * the correction range (the released config's "truncate": false). */
#define ENG_GGUF_OAI_SWIGLU_LIMIT 7.0f

/* DeepSeek's rope.scaling.yarn_log_multiplier is 0.1 * mscale_all_dim, stored as f32;
 * mscale_all_dim comes back as 10 * the shortest decimal that reads back as that f32 (so
 * 0.8 -> 0.08f -> "0.08" -> 0.8, not 0.79999998). */
static inline double eng_gguf_mscale_from_log_mul(float log_mul) {
  char s[32];
  for (int p = 1; p <= 9; p++) {
    snprintf(s, sizeof s, "%.*g", p, (double)log_mul);
    if ((float)strtod(s, NULL) == log_mul) break;
  }
  return strtod(s, NULL) * 10.0;
}

#endif
