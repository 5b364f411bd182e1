/* eng_gguf_names.h — internal to eng_gguf_*.c: llama.cpp <-> Hugging Face names.
 *
 * llama.cpp (llama-arch.cpp LLM_TENSOR_NAMES, gguf-py constants.py) names a tensor
 * "blk.N.<part>.weight|bias"; Hugging Face "model.layers.N.<module>.weight|bias". The
 * table maps the per-layer parts; `hf_mixtral` is Mixtral's spelling where it differs
 * from the generic one (Qwen2-MoE / Qwen3-MoE / OLMoE / DeepSeek use mlp.*).
 * `shexp_ds`: DeepSeek's shared experts are mlp.shared_experts.*, Qwen2-MoE's mlp.shared_expert.*.
 */
#ifndef MOESCOPE_ENG_GGUF_NAMES_H
#define MOESCOPE_ENG_GGUF_NAMES_H

typedef struct { const char *gguf, *hf, *hf_mixtral, *hf_deepseek; } eng_gguf_name;

static const eng_gguf_name eng_gguf_layer_names[] = {
  {"attn_norm.weight", "input_layernorm.weight", 0, 0},
  {"attn_q.weight", "self_attn.q_proj.weight", 0, 0},
  {"attn_k.weight", "self_attn.k_proj.weight", 0, 0},
  {"attn_v.weight", "self_attn.v_proj.weight", 0, 0},
  {"attn_q.bias", "self_attn.q_proj.bias", 0, 0},
  {"attn_k.bias", "self_attn.k_proj.bias", 0, 0},
  {"attn_v.bias", "self_attn.v_proj.bias", 0, 0},
  {"attn_output.weight", "self_attn.o_proj.weight", 0, 0},
  {"attn_output.bias", "self_attn.o_proj.bias", 0, 0},
  {"attn_q_norm.weight", "self_attn.q_norm.weight", 0, 0},
  {"attn_k_norm.weight", "self_attn.k_norm.weight", 0, 0},
  {"attn_q_a.weight", "self_attn.q_a_proj.weight", 0, 0},
  {"attn_q_a_norm.weight", "self_attn.q_a_layernorm.weight", 0, 0},
  {"attn_q_b.weight", "self_attn.q_b_proj.weight", 0, 0},
  {"attn_kv_a_mqa.weight", "self_attn.kv_a_proj_with_mqa.weight", 0, 0},
  {"attn_kv_a_norm.weight", "self_attn.kv_a_layernorm.weight", 0, 0},
  {"attn_kv_b.weight", "self_attn.kv_b_proj.weight", 0, 0},
  {"attn_sinks.weight", "self_attn.sinks", 0, 0},
  {"ffn_norm.weight", "post_attention_layernorm.weight", 0, 0},
  {"ffn_gate_inp.weight", "mlp.gate.weight", "block_sparse_moe.gate.weight", 0},
  {"ffn_gate_inp.bias", "mlp.router.bias", 0, 0},
  {"exp_probs_b.bias", "mlp.gate.e_score_correction_bias", 0, 0},
  {"ffn_gate_inp_shexp.weight", "mlp.shared_expert_gate.weight", 0, 0},
  {"ffn_gate_shexp.weight", "mlp.shared_expert.gate_proj.weight", 0, "mlp.shared_experts.gate_proj.weight"},
  {"ffn_up_shexp.weight", "mlp.shared_expert.up_proj.weight", 0, "mlp.shared_experts.up_proj.weight"},
  {"ffn_down_shexp.weight", "mlp.shared_expert.down_proj.weight", 0, "mlp.shared_experts.down_proj.weight"},
  {"ffn_gate.weight", "mlp.gate_proj.weight", 0, 0},
  {"ffn_up.weight", "mlp.up_proj.weight", 0, 0},
  {"ffn_down.weight", "mlp.down_proj.weight", 0, 0},
  {0, 0, 0, 0},
};

/* Stacked experts: GGUF blk.N.ffn_<part>_exps.weight, ne = [cols, rows, E]. */
static const char *const eng_gguf_exps[3] = {"ffn_gate_exps.weight", "ffn_up_exps.weight", "ffn_down_exps.weight"};
static const char *const eng_gguf_exp_hf[3] = {"gate_proj", "up_proj", "down_proj"};
static const char *const eng_gguf_exp_mixtral[3] = {"w1", "w3", "w2"};

/* model_type <-> general.architecture */
static const char *const eng_gguf_arch_map[][2] = {
  {"mixtral", "llama"}, {"qwen2_moe", "qwen2moe"}, {"qwen3_moe", "qwen3moe"}, {"olmoe", "olmoe"},
  {"deepseek_v2", "deepseek2"}, {"deepseek_v3", "deepseek2"}, {"gpt_oss", "gpt-oss"}, {0, 0},
};

#endif
