/* eng_synth_family.c — `moescope synth --family F` for the families whose tensor layout is
 * not Mixtral's: qwen2_moe, qwen3_moe, olmoe, deepseek_v2, deepseek_v3, gpt_oss (see
 * eng_synth.h for what each model exercises). Random weights with HF tensor names and an
 * HF config.json of the family; the tokenizer is the one eng_synth.c writes. Deterministic
 * (eng_synth_int.h PRNG). No planted structure. */
#include "engine/eng_synth_int.h"
#include "engine/eng_st_write.h"

#include <stdio.h>
#include <stdlib.h>

typedef struct {
  const eng_synth_opts *o;
  eng_stw *w;
  char *err;
  size_t errlen;
} fctx;

/* shape [d0] (d1 == 0), [d0,d1] or [d0,d1,d2] (d2 > 0); N(mean, std) */
static int add(fctx *c, const char *name, int64_t d0, int64_t d1, int64_t d2, double std, double mean) {
  int64_t n = d0 * (d1 > 0 ? d1 : 1) * (d2 > 0 ? d2 : 1);
  float *p = malloc((size_t)n * sizeof(float));
  if (!p) { snprintf(c->err, c->errlen, "synth: out of memory"); return -1; }
  rng_t r = rng_for(c->o->seed, name);
  for (int64_t i = 0; i < n; i++) p[i] = (float)(mean + std * rng_norm(&r));
  int64_t shape[3] = {d0, d1, d2};
  int rc = eng_stw_add(c->w, name, ENG_STW_F32, d2 > 0 ? 3 : d1 > 0 ? 2 : 1, shape, p, c->err, c->errlen);
  free(p);
  return rc;
}

/* derived sizes */
typedef struct { int hd, nope, rope, vhd, kvr, qr, ngroup, tgroup, shared_i, dense_i, window; } fdims;
static fdims dims(const eng_synth_opts *o, int fam) {
  fdims d = {0};
  d.hd = o->hidden / o->heads;
  if (fam == SYN_GPT_OSS) d.hd = d.hd + d.hd / 2 + (d.hd / 2) % 2;   /* q width != hidden on purpose */
  d.nope = d.hd; d.rope = d.hd / 2 >= 8 ? (d.hd / 2) & ~1 : 8; d.vhd = d.hd;
  d.kvr = o->hidden / 2 >= 16 ? o->hidden / 2 : 16;
  d.qr = fam == SYN_DEEPSEEK_V3 ? d.kvr : 0;
  d.ngroup = o->experts % 4 == 0 && o->experts >= 8 ? 4 : 1;
  d.tgroup = d.ngroup > 1 ? 2 : 1;
  if (o->top_k > d.tgroup * (o->experts / d.ngroup)) d.tgroup = d.ngroup;
  d.shared_i = 2 * o->intermediate;
  d.dense_i = 2 * o->intermediate;
  d.window = 4;
  return d;
}

int eng_synth__family_validate(const eng_synth_opts *o, int fam, char *err, size_t errlen) {
  if (fam == SYN_DEEPSEEK_V3) {
    fdims d = dims(o, fam);
    if (o->experts / d.ngroup < 2) { snprintf(err, errlen, "synth: deepseek_v3 needs >= 2 experts per group"); return -1; }
  }
  if ((fam == SYN_DEEPSEEK_V2 || fam == SYN_DEEPSEEK_V3) && o->layers < 2) {
    snprintf(err, errlen, "synth: %s needs >= 2 layers (layer 0 is dense)", o->family);
    return -1;
  }
  return 0;
}

static int gen_tensors(fctx *c, int fam, const fdims *d) {
  const eng_synth_opts *o = c->o;
  int64_t H = o->hidden, V = o->vocab, E = o->experts, I = o->intermediate, nh = o->heads, nkv = o->kv_heads;
  int64_t hd = d->hd, qd = nh * hd, kvd = nkv * hd;
  int mla = fam == SYN_DEEPSEEK_V2 || fam == SYN_DEEPSEEK_V3, oai = fam == SYN_GPT_OSS;
  char nm[256], p[64];
#define N(...) (snprintf(nm, sizeof nm, __VA_ARGS__), nm)
  if (add(c, "model.embed_tokens.weight", V, H, 0, 1.0, 0) || add(c, "model.norm.weight", H, 0, 0, 0.05, 1.0) ||
      add(c, "lm_head.weight", V, H, 0, 0.05, 0))
    return -1;
  for (int l = 0; l < o->layers; l++) {
    snprintf(p, sizeof p, "model.layers.%d.", l);
    if (add(c, N("%sinput_layernorm.weight", p), H, 0, 0, 0.05, 1.0) ||
        add(c, N("%spost_attention_layernorm.weight", p), H, 0, 0, 0.05, 1.0))
      return -1;
    /* attention */
    if (mla) {
      int64_t qk = d->nope + d->rope;
      if (d->qr > 0) {
        if (add(c, N("%sself_attn.q_a_proj.weight", p), d->qr, H, 0, 0.1, 0) ||
            add(c, N("%sself_attn.q_a_layernorm.weight", p), d->qr, 0, 0, 0.05, 1.0) ||
            add(c, N("%sself_attn.q_b_proj.weight", p), nh * qk, d->qr, 0, 0.1, 0))
          return -1;
      } else if (add(c, N("%sself_attn.q_proj.weight", p), nh * qk, H, 0, 0.1, 0)) return -1;
      if (add(c, N("%sself_attn.kv_a_proj_with_mqa.weight", p), d->kvr + d->rope, H, 0, 0.1, 0) ||
          add(c, N("%sself_attn.kv_a_layernorm.weight", p), d->kvr, 0, 0, 0.05, 1.0) ||
          add(c, N("%sself_attn.kv_b_proj.weight", p), nh * (d->nope + d->vhd), d->kvr, 0, 0.1, 0) ||
          add(c, N("%sself_attn.o_proj.weight", p), H, nh * d->vhd, 0, 0.05, 0))
        return -1;
    } else {
      if (add(c, N("%sself_attn.q_proj.weight", p), qd, H, 0, 0.1, 0) ||
          add(c, N("%sself_attn.k_proj.weight", p), kvd, H, 0, 0.1, 0) ||
          add(c, N("%sself_attn.v_proj.weight", p), kvd, H, 0, 0.05, 0) ||
          add(c, N("%sself_attn.o_proj.weight", p), H, qd, 0, 0.05, 0))
        return -1;
      if (fam == SYN_QWEN2_MOE || oai)
        if (add(c, N("%sself_attn.q_proj.bias", p), qd, 0, 0, 0.1, 0) || add(c, N("%sself_attn.k_proj.bias", p), kvd, 0, 0, 0.1, 0) ||
            add(c, N("%sself_attn.v_proj.bias", p), kvd, 0, 0, 0.1, 0))
          return -1;
      if (oai && (add(c, N("%sself_attn.o_proj.bias", p), H, 0, 0, 0.05, 0) || add(c, N("%sself_attn.sinks", p), nh, 0, 0, 1.0, 0)))
        return -1;
      if (fam == SYN_QWEN3_MOE &&
          (add(c, N("%sself_attn.q_norm.weight", p), hd, 0, 0, 0.1, 1.0) || add(c, N("%sself_attn.k_norm.weight", p), hd, 0, 0, 0.1, 1.0)))
        return -1;
      if (fam == SYN_OLMOE &&
          (add(c, N("%sself_attn.q_norm.weight", p), qd, 0, 0, 0.1, 1.0) || add(c, N("%sself_attn.k_norm.weight", p), kvd, 0, 0, 0.1, 1.0)))
        return -1;
    }
    /* FFN */
    int dense = (mla && l == 0) || (fam == SYN_QWEN2_MOE && o->layers >= 3 && l == 1);
    if (dense) {
      if (add(c, N("%smlp.gate_proj.weight", p), d->dense_i, H, 0, 0.05, 0) || add(c, N("%smlp.up_proj.weight", p), d->dense_i, H, 0, 0.05, 0) ||
          add(c, N("%smlp.down_proj.weight", p), H, d->dense_i, 0, 0.05, 0))
        return -1;
      continue;
    }
    if (oai) {
      if (add(c, N("%smlp.router.weight", p), E, H, 0, 0.3, 0) || add(c, N("%smlp.router.bias", p), E, 0, 0, 0.3, 0) ||
          add(c, N("%smlp.experts.gate_up_proj", p), E, H, 2 * I, 0.4, 0) ||
          add(c, N("%smlp.experts.gate_up_proj_bias", p), E, 2 * I, 0, 0.5, 0) ||
          add(c, N("%smlp.experts.down_proj", p), E, I, H, 0.05, 0) ||
          add(c, N("%smlp.experts.down_proj_bias", p), E, H, 0, 0.05, 0))
        return -1;
      continue;
    }
    if (add(c, N("%smlp.gate.weight", p), E, H, 0, 0.3, 0)) return -1;
    if (fam == SYN_DEEPSEEK_V3 && add(c, N("%smlp.gate.e_score_correction_bias", p), E, 0, 0, 0.1, 0)) return -1;
    for (int e = 0; e < E; e++)
      if (add(c, N("%smlp.experts.%d.gate_proj.weight", p, e), I, H, 0, 0.05, 0) ||
          add(c, N("%smlp.experts.%d.up_proj.weight", p, e), I, H, 0, 0.05, 0) ||
          add(c, N("%smlp.experts.%d.down_proj.weight", p, e), H, I, 0, 0.05, 0))
        return -1;
    if (fam == SYN_QWEN2_MOE || mla) {
      const char *sp = fam == SYN_QWEN2_MOE ? "shared_expert" : "shared_experts";
      if (add(c, N("%smlp.%s.gate_proj.weight", p, sp), d->shared_i, H, 0, 0.05, 0) ||
          add(c, N("%smlp.%s.up_proj.weight", p, sp), d->shared_i, H, 0, 0.05, 0) ||
          add(c, N("%smlp.%s.down_proj.weight", p, sp), H, d->shared_i, 0, 0.05, 0))
        return -1;
      if (fam == SYN_QWEN2_MOE && add(c, N("%smlp.shared_expert_gate.weight", p), 1, H, 0, 0.3, 0)) return -1;
    }
  }
#undef N
  return 0;
}

static void yarn(cJSON *j, double factor, int orig, double mscale, double mscale_all, int truncate) {
  cJSON *r = cJSON_AddObjectToObject(j, "rope_scaling");
  cJSON_AddStringToObject(r, "rope_type", "yarn");
  cJSON_AddNumberToObject(r, "factor", factor);
  cJSON_AddNumberToObject(r, "original_max_position_embeddings", orig);
  cJSON_AddNumberToObject(r, "beta_fast", 32);
  cJSON_AddNumberToObject(r, "beta_slow", 1);
  if (mscale > 0) { cJSON_AddNumberToObject(r, "mscale", mscale); cJSON_AddNumberToObject(r, "mscale_all_dim", mscale_all); }
  if (!truncate) cJSON_AddBoolToObject(r, "truncate", 0);
}

static cJSON *make_config(const eng_synth_opts *o, int fam, const fdims *d) {
  static const char *arch[] = {"", "Qwen2MoeForCausalLM", "Qwen3MoeForCausalLM", "OlmoeForCausalLM",
                               "DeepseekV2ForCausalLM", "DeepseekV3ForCausalLM", "GptOssForCausalLM"};
  cJSON *j = cJSON_CreateObject();
  if (!j) return NULL;
  cJSON_AddItemToArray(cJSON_AddArrayToObject(j, "architectures"), cJSON_CreateString(arch[fam]));
  cJSON_AddStringToObject(j, "model_type", eng_synth__family(o->family) == fam ? o->family : "");
  cJSON_AddNumberToObject(j, "vocab_size", o->vocab);
  cJSON_AddNumberToObject(j, "hidden_size", o->hidden);
  cJSON_AddNumberToObject(j, "num_hidden_layers", o->layers);
  cJSON_AddNumberToObject(j, "num_attention_heads", o->heads);
  cJSON_AddNumberToObject(j, "num_key_value_heads", fam == SYN_DEEPSEEK_V2 || fam == SYN_DEEPSEEK_V3 ? o->heads : o->kv_heads);
  cJSON_AddNumberToObject(j, "num_experts_per_tok", o->top_k);
  cJSON_AddNumberToObject(j, "max_position_embeddings", o->max_pos);
  cJSON_AddNumberToObject(j, "rms_norm_eps", fam == SYN_QWEN2_MOE || fam == SYN_QWEN3_MOE ? 1e-6 : 1e-5);
  cJSON_AddNumberToObject(j, "bos_token_id", o->vocab - 1);
  cJSON_AddNumberToObject(j, "eos_token_id", o->vocab - 1);
  cJSON_AddStringToObject(j, "hidden_act", "silu");
  cJSON_AddBoolToObject(j, "tie_word_embeddings", 0);
  cJSON_AddStringToObject(j, "torch_dtype", "float32");
  cJSON_AddNumberToObject(j, "attention_dropout", 0.0);
  cJSON_AddNumberToObject(j, "initializer_range", 0.02);
  cJSON_AddBoolToObject(j, "use_cache", 1);
  cJSON_AddBoolToObject(j, "output_router_logits", 0);
  cJSON_AddNumberToObject(j, "router_aux_loss_coef", 0.01);
  switch (fam) {
  case SYN_QWEN2_MOE:
  case SYN_QWEN3_MOE: {
    cJSON_AddNumberToObject(j, "num_experts", o->experts);
    cJSON_AddNumberToObject(j, "moe_intermediate_size", o->intermediate);
    cJSON_AddNumberToObject(j, "intermediate_size", d->dense_i);
    cJSON_AddNumberToObject(j, "decoder_sparse_step", 1);
    cJSON *ml = cJSON_AddArrayToObject(j, "mlp_only_layers");
    if (fam == SYN_QWEN2_MOE && o->layers >= 3) cJSON_AddItemToArray(ml, cJSON_CreateNumber(1));
    cJSON_AddNumberToObject(j, "head_dim", d->hd);
    cJSON_AddNumberToObject(j, "rope_theta", 1000000.0);
    cJSON_AddNullToObject(j, "rope_scaling");
    cJSON_AddBoolToObject(j, "use_sliding_window", 0);
    cJSON_AddNullToObject(j, "sliding_window");
    if (fam == SYN_QWEN2_MOE) {
      cJSON_AddNumberToObject(j, "shared_expert_intermediate_size", d->shared_i);
      cJSON_AddBoolToObject(j, "norm_topk_prob", 0);
      cJSON_AddBoolToObject(j, "qkv_bias", 1);
    } else {
      cJSON_AddBoolToObject(j, "norm_topk_prob", 1);
      cJSON_AddBoolToObject(j, "attention_bias", 0);
    }
    break;
  }
  case SYN_OLMOE:
    cJSON_AddNumberToObject(j, "num_experts", o->experts);
    cJSON_AddNumberToObject(j, "intermediate_size", o->intermediate);
    cJSON_AddBoolToObject(j, "norm_topk_prob", 0);
    cJSON_AddBoolToObject(j, "attention_bias", 0);
    cJSON_AddNullToObject(j, "clip_qkv");
    cJSON_AddNumberToObject(j, "rope_theta", 10000.0);
    cJSON_AddNullToObject(j, "rope_scaling");
    break;
  case SYN_DEEPSEEK_V2:
  case SYN_DEEPSEEK_V3: {
    int v3 = fam == SYN_DEEPSEEK_V3;
    cJSON_AddNumberToObject(j, "n_routed_experts", o->experts);
    cJSON_AddNumberToObject(j, "n_shared_experts", v3 ? 1 : 2);
    cJSON_AddNumberToObject(j, "moe_intermediate_size", v3 ? d->shared_i : o->intermediate);
    cJSON_AddNumberToObject(j, "intermediate_size", d->dense_i);
    cJSON_AddNumberToObject(j, "first_k_dense_replace", 1);
    cJSON_AddNumberToObject(j, "moe_layer_freq", 1);
    cJSON_AddNumberToObject(j, "n_group", d->ngroup);
    cJSON_AddNumberToObject(j, "topk_group", d->tgroup);
    cJSON_AddNumberToObject(j, "routed_scaling_factor", v3 ? 2.5 : 1.5);
    cJSON_AddBoolToObject(j, "norm_topk_prob", v3);
    cJSON_AddStringToObject(j, "topk_method", v3 ? "noaux_tc" : "group_limited_greedy");
    cJSON_AddStringToObject(j, "scoring_func", v3 ? "sigmoid" : "softmax");
    if (d->qr > 0) cJSON_AddNumberToObject(j, "q_lora_rank", d->qr);
    else cJSON_AddNullToObject(j, "q_lora_rank");
    cJSON_AddNumberToObject(j, "kv_lora_rank", d->kvr);
    cJSON_AddNumberToObject(j, "qk_nope_head_dim", d->nope);
    cJSON_AddNumberToObject(j, "qk_rope_head_dim", d->rope);
    cJSON_AddNumberToObject(j, "v_head_dim", d->vhd);
    cJSON_AddNumberToObject(j, "head_dim", d->rope);
    cJSON_AddBoolToObject(j, "attention_bias", 0);
    cJSON_AddNumberToObject(j, "rope_theta", 10000.0);
    if (v3) cJSON_AddBoolToObject(j, "rope_interleave", 1);
    yarn(j, 4.0, o->max_pos / 4 > 16 ? o->max_pos / 4 : 16, v3 ? 1.0 : 0.707, v3 ? 1.0 : 0.707, 1);
    break;
  }
  default: {  /* gpt_oss */
    cJSON_AddNumberToObject(j, "num_local_experts", o->experts);
    cJSON_AddNumberToObject(j, "experts_per_token", o->top_k);
    cJSON_AddNumberToObject(j, "intermediate_size", o->intermediate);
    cJSON_AddNumberToObject(j, "head_dim", d->hd);
    cJSON_AddBoolToObject(j, "attention_bias", 1);
    cJSON_AddNumberToObject(j, "sliding_window", d->window);
    cJSON_AddNumberToObject(j, "swiglu_limit", 7.0);
    cJSON_AddNumberToObject(j, "rope_theta", 150000.0);
    cJSON_AddNumberToObject(j, "initial_context_length", o->max_pos / 8 > 16 ? o->max_pos / 8 : 16);
    yarn(j, 32.0, o->max_pos / 8 > 16 ? o->max_pos / 8 : 16, 0, 0, 0);
    cJSON *lt = cJSON_AddArrayToObject(j, "layer_types");
    for (int l = 0; l < o->layers; l++)
      cJSON_AddItemToArray(lt, cJSON_CreateString(l % 2 == 0 ? "sliding_attention" : "full_attention"));
    break;
  }
  }
  cJSON *m = cJSON_AddObjectToObject(j, "moescope_synth");
  cJSON_AddNumberToObject(m, "version", 1);
  cJSON_AddStringToObject(m, "family", o->family);
  cJSON_AddStringToObject(m, "plant", "none");
  cJSON_AddNumberToObject(m, "seed", (double)o->seed);
  cJSON_AddStringToObject(m, "description", "random weights of the family's HF layout; no planted structure");
  return j;
}

int eng_synth__family_write(const eng_synth_opts *o, int fam, const char *outdir, char *err, size_t errlen) {
  fdims d = dims(o, fam);
  if (eng_synth__mkdirs(outdir, err, errlen)) return -1;
  fctx c = {o, eng_stw_new(), err, errlen};
  if (!c.w) { snprintf(err, errlen, "synth: out of memory"); return -1; }
  eng_synth_opts oo = *o;
  if (fam == SYN_DEEPSEEK_V3) oo.intermediate = d.shared_i;   /* v3: wider routed experts, 1 shared */
  c.o = &oo;
  d.shared_i = fam == SYN_DEEPSEEK_V2 ? 2 * o->intermediate : d.shared_i;
  int rc = gen_tensors(&c, fam, &d);
  if (!rc) rc = eng_stw_write_dir(c.w, outdir, err, errlen);
  eng_stw_free(c.w);
  int n_merges = 0;
  if (!rc) rc = eng_synth__tokenizer(o, outdir, &n_merges, err, errlen);
  if (!rc) rc = eng_synth__generation_config(o, outdir, err, errlen);
  if (!rc) {
    cJSON *j = make_config(o, fam, &d);
    if (!j) { snprintf(err, errlen, "synth: out of memory"); return -1; }
    rc = eng_synth__json(outdir, "config.json", j, err, errlen);   /* last: marks done */
    cJSON_Delete(j);
  }
  return rc;
}
