/* eng_model.h — a loaded MoE model: its configuration (from HF config.json) and its
 * weights. Weight matrices are krn_w views into the memory-mapped checkpoint in their
 * stored type (F32 / BF16 / F16 / Q8_0 / Q4_0 / Q4_K / Q5_K / Q6_K; the kernels widen them
 * on the fly), so loading copies nothing big: the model keeps the mapping (eng_st_set) alive and
 * eng_model_free unmaps it. Small vectors (norms, biases, sinks, score bias) are float32
 * copies; matrices whose layout needs a transform (gpt-oss's interleaved / transposed
 * experts, a hierarchical router's joined gate, F64 tensors) are float32 copies too.
 * Knows the tensor-name variants of each supported family and checks every shape against
 * the config, refusing with one error line that names the tensor.
 *
 * Families (config.json model_type): mixtral, qwen2_moe, qwen3_moe, olmoe, deepseek_v2,
 * deepseek_v3, gpt_oss; expert weights per expert (block_sparse_moe.experts.E.w1/w3/w2 or
 * mlp.experts.E.gate_proj/up_proj/down_proj) or packed 3-D (mlp.experts.gate_up_proj /
 * down_proj; gpt-oss's [E,H,2I] interleaved layout with biases). A Mixtral-layout config may
 * carry "moescope_router" (synthetic Switch / hierarchical routers, see eng_synth.h).
 */
#ifndef MOESCOPE_ENG_MODEL_H
#define MOESCOPE_ENG_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "engine/eng_policy.h"
#include "kernels/krn_backend.h"

#define ENG_MAX_LAYERS 4096

typedef enum {
  ENG_FAM_MIXTRAL = 0, ENG_FAM_QWEN2_MOE, ENG_FAM_QWEN3_MOE, ENG_FAM_OLMOE, ENG_FAM_DEEPSEEK_V2,
  ENG_FAM_DEEPSEEK_V3, ENG_FAM_GPT_OSS, ENG_FAM_COUNT
} eng_family;

/* q/k normalisation before RoPE */
enum { ENG_QKNORM_NONE = 0, ENG_QKNORM_HEAD = 1 /* qwen3: per head [hd] */, ENG_QKNORM_FULL = 2 /* olmoe: [nh*hd] */ };
/* expert activation */
enum { ENG_ACT_SWIGLU = 0, ENG_ACT_SWIGLU_OAI = 1 /* gpt-oss clamped variant */ };

typedef struct eng_config {
  char model_type[32];        /* "mixtral", "qwen2_moe", ... as in config.json */
  char torch_dtype[16];       /* "bfloat16", "float32", ... (informational) */
  eng_family family;
  int vocab, hidden, n_layers, n_heads, n_kv_heads, head_dim;
  int intermediate;           /* per routed expert FFN width (moe_intermediate_size where the family has it) */
  int dense_intermediate;     /* FFN width of dense (non-MoE) layers; 0 when every layer is MoE */
  int n_experts, top_k;
  int n_shared_experts;       /* DeepSeek n_shared_experts, 1 for Qwen2-MoE's shared expert, else 0 */
  int shared_intermediate;    /* width of the (merged) shared expert; 0 = none */
  int shared_gated;           /* Qwen2-MoE: shared output * sigmoid(shared_expert_gate . h) */
  int max_pos;
  float rms_eps, rope_theta;
  int norm_topk_prob;         /* renormalise the k gate weights */
  int tie_embeddings;
  int bos_id, eos_id;         /* -1 when absent */
  /* per layer */
  unsigned char moe_layer[ENG_MAX_LAYERS];   /* 1 = MoE FFN, 0 = dense MLP */
  unsigned char sliding[ENG_MAX_LAYERS];     /* 1 = sliding-window attention (gpt-oss) */
  /* attention variants */
  int qkv_bias, o_bias;       /* projection biases */
  int qk_norm;                /* ENG_QKNORM_* */
  float clip_qkv;             /* OLMoE: clamp q, k, v to +-clip (0 = off) */
  int sliding_window;         /* tokens (0 = none) */
  int attn_sinks;             /* gpt-oss learned sinks */
  int mla;                    /* DeepSeek multi-head latent attention */
  int q_lora_rank, kv_lora_rank, qk_nope_dim, qk_rope_dim, v_head_dim;
  /* RoPE */
  int rope_dim;               /* rotated dims per head (head_dim, or qk_rope_head_dim for MLA) */
  int rope_interleave;        /* pairs (2i, 2i+1) instead of rotate-half (i, i+d/2) */
  int rope_yarn;              /* rope_scaling type yarn */
  float yarn_factor, yarn_beta_fast, yarn_beta_slow, yarn_mscale, yarn_mscale_all_dim;
  int yarn_orig_max_pos, yarn_truncate;
  double rope_attn_factor;    /* multiplies cos and sin (YaRN attention factor; 1 otherwise) */
  double attn_scale;          /* softmax scale of q.k */
  /* experts */
  int expert_act;             /* ENG_ACT_* */
  float act_alpha, act_limit; /* gpt-oss 1.702, swiglu_limit */
  int expert_bias, router_bias;
  eng_router_cfg router;      /* the family's native router (kind, k, renorm, groups, scale, ...) */
} eng_config;

/* One SwiGLU FFN (routed expert, shared expert or dense MLP); biases NULL unless gpt-oss.
 * A krn_w with data == NULL is absent. */
typedef struct eng_expert { krn_w w1, w3, w2; float *b1, *b3, *b2; } eng_expert;  /* [I,H], [I,H], [H,I] */

typedef struct eng_layer {
  float *attn_norm;                   /* [H] */
  krn_w q, k, v, o;                   /* [nh*hd,H], [nkv*hd,H], [nkv*hd,H], [H,nh*hd] */
  float *bq, *bk, *bv, *bo;           /* projection biases or NULL */
  float *q_norm, *k_norm;             /* qk-norm weights or NULL */
  float *sinks;                       /* [nh] or NULL */
  /* MLA (q is q_proj when q_lora_rank is 0) */
  krn_w q_a, q_b, kv_a, kv_b;
  float *q_a_norm, *kv_a_norm, *b_q_a, *b_kv_a;
  float *moe_norm;                    /* [H] post-attention norm */
  krn_w gate;                         /* router [E,H] (hierarchical: [E+G,H] float32, group rows last) */
  float *gate_bias;                   /* gpt-oss router bias [E] */
  float *score_bias;                  /* DeepSeek-V3 e_score_correction_bias [E] */
  eng_expert *experts;                /* [E] on MoE layers, NULL on dense layers */
  eng_expert dense;                   /* dense MLP (non-MoE layers) */
  eng_expert shared;                  /* shared expert (w1 NULL when none) */
  float *shared_gate;                 /* Qwen2-MoE [1,H] */
} eng_layer;

typedef struct eng_model {
  eng_config cfg;
  char dir[1024];
  char dtype[16];             /* dominant stored dtype: "F32", "BF16", "F16", "Q8_0", ... */
  krn_w embed;                /* [V,H] */
  eng_layer *layers;
  float *final_norm;          /* [H] */
  krn_w lm_head;              /* [V,H]; data NULL when tied to embed */
  size_t n_params;            /* total parameters */
  size_t n_active_params;     /* parameters touched per token (k of E experts) */
  char sha256[65];            /* of the weight file(s), hex */
  /* storage: the mapped tensor set the views point into (owned unless loaded through
   * eng_model_load_set), and every heap block the model allocated */
  struct eng_st_set *set;
  int owns_set;
  void **heap;
  int n_heap, cap_heap;
  size_t heap_bytes;          /* bytes malloc'd by the loader (copies, tables, layer arrays) */
  size_t weight_bytes;        /* bytes of all weights as the kernels read them (views + copies) */
  size_t copied_weight_bytes; /* the part of weight_bytes that lives on the heap */
} eng_model;

/* Family name of a model_type ("mixtral", ...); NULL for unknown. */
const char *eng_family_name(eng_family f);

/* Parses config.json into cfg. 0 or -1 with an error naming the file and field. */
int eng_config_load(eng_config *cfg, const char *path, char *err, size_t errlen);

/* Parses config.json text (label names it in errors). */
int eng_config_parse(eng_config *cfg, const char *json_text, const char *label, char *err, size_t errlen);

/* Loads dir/config.json and the safetensors weights. 0 or -1 (+err). */
int eng_model_load(eng_model *m, const char *dir, char *err, size_t errlen);
/* Loads from an already opened tensor set (HF names) and config.json text, e.g. a GGUF file
 * presented as a HF folder; the set stays owned by the caller and must outlive the model
 * (the weights are views into it). 0 or -1 (+err). */
struct eng_st_set;
int eng_model_load_set(eng_model *m, const char *label, const char *config_json, struct eng_st_set *set,
                       char *err, size_t errlen);
void eng_model_free(eng_model *m);
/* Bytes of weights one decode token reads: every dense matrix and norm, the router, k of
 * E experts per MoE layer, shared experts, one embedding row, the output head, each at
 * its stored size (BF16 2 bytes per parameter, Q8_0 34/32, float32 copies 4). */
double eng_model_decode_bytes(const eng_model *m);

#endif
