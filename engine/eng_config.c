/* eng_config.c — reads a Hugging Face config.json into eng_config, checking that every
 * field the forward pass needs is present, of the right type and consistent. */
#include "engine/eng_util.h"
#include "engine/eng_model.h"

#include <cjson/cJSON.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* integer field: required (dflt < -1 means required) */
static int get_int(const cJSON *root, const char *key, int dflt, int *out, const char *path, char *err, size_t errlen) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
  if (!v || cJSON_IsNull(v)) {
    if (dflt < -1) return eng_errf(err, errlen, "%s: missing required field '%s'", path, key);
    *out = dflt;
    return 0;
  }
  if (!cJSON_IsNumber(v) || !(v->valuedouble >= INT_MIN && v->valuedouble <= INT_MAX) ||
      v->valuedouble != floor(v->valuedouble))
    return eng_errf(err, errlen, "%s: field '%s' must be an integer", path, key);
  *out = (int)v->valuedouble;
  return 0;
}

static int get_float(const cJSON *root, const char *key, double dflt, float *out, const char *path, char *err, size_t errlen) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
  if (!v || cJSON_IsNull(v)) { *out = (float)dflt; return 0; }
  if (!cJSON_IsNumber(v) || !(fabs(v->valuedouble) <= FLT_MAX))
    return eng_errf(err, errlen, "%s: field '%s' must be a number (float32 range)", path, key);
  *out = (float)v->valuedouble;
  return 0;
}

static int get_bool(const cJSON *root, const char *key, int dflt) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
  if (cJSON_IsBool(v)) return cJSON_IsTrue(v);
  return dflt;
}

/* bos/eos may be an int or a list of ints (first taken); -1 when absent, -2 when not a
 * non-negative int */
static int get_token_id(const cJSON *root, const char *key) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
  if (cJSON_IsArray(v)) v = cJSON_GetArrayItem(v, 0);
  if (!cJSON_IsNumber(v)) return -1;
  double d = v->valuedouble;
  if (!(d >= 0 && d <= INT_MAX) || d != floor(d)) return -2;
  return (int)d;
}

const char *eng_family_name(eng_family f) {
  static const char *n[] = {"mixtral", "qwen2_moe", "qwen3_moe", "olmoe", "deepseek_v2", "deepseek_v3", "gpt_oss"};
  return (unsigned)f < ENG_FAM_COUNT ? n[f] : NULL;
}

/* required int when dflt < -1; absent or null -> dflt */
#define GI(key, dflt, dst) if ((rc = get_int(root, key, dflt, dst, path, err, errlen))) goto done
#define GF(key, dflt, dst) if ((rc = get_float(root, key, dflt, dst, path, err, errlen))) goto done

static double yarn_mscale(double scale, double m) { return scale <= 1 ? 1.0 : 0.1 * m * log(scale) + 1.0; }

/* rope_scaling (or transformers-5 rope_parameters): YaRN parameters; other types refused. */
static int parse_rope_scaling(eng_config *c, const cJSON *root, const char *path, char *err, size_t errlen) {
  const cJSON *rs = cJSON_GetObjectItemCaseSensitive(root, "rope_scaling");
  if (!cJSON_IsObject(rs)) rs = cJSON_GetObjectItemCaseSensitive(root, "rope_parameters");
  if (!cJSON_IsObject(rs)) return 0;
  const cJSON *ty = cJSON_GetObjectItemCaseSensitive(rs, "rope_type");
  if (!cJSON_IsString(ty)) ty = cJSON_GetObjectItemCaseSensitive(rs, "type");
  const cJSON *th = cJSON_GetObjectItemCaseSensitive(rs, "rope_theta");
  if (cJSON_IsNumber(th) && th->valuedouble > 0) c->rope_theta = (float)th->valuedouble;
  if (!cJSON_IsString(ty) || !strcmp(ty->valuestring, "default")) return 0;
  if (strcmp(ty->valuestring, "yarn"))
    return eng_errf(err, errlen, "%s: rope_scaling type '%s' is not supported (supported: yarn)", path, ty->valuestring);
  int rc = 0;
  const cJSON *root_save = root;
  (void)root_save;
  c->rope_yarn = 1;
  float factor = 0, af = 0;
  if ((rc = get_float(rs, "factor", 0, &factor, path, err, errlen)) ||
      (rc = get_float(rs, "beta_fast", 32, &c->yarn_beta_fast, path, err, errlen)) ||
      (rc = get_float(rs, "beta_slow", 1, &c->yarn_beta_slow, path, err, errlen)) ||
      (rc = get_float(rs, "mscale", 0, &c->yarn_mscale, path, err, errlen)) ||
      (rc = get_float(rs, "mscale_all_dim", 0, &c->yarn_mscale_all_dim, path, err, errlen)) ||
      (rc = get_float(rs, "attention_factor", 0, &af, path, err, errlen)) ||
      (rc = get_int(rs, "original_max_position_embeddings", c->max_pos, &c->yarn_orig_max_pos, path, err, errlen)))
    return rc;
  if (c->yarn_beta_fast == 0) c->yarn_beta_fast = 32;   /* HF: `or 32` / `or 1` */
  if (c->yarn_beta_slow == 0) c->yarn_beta_slow = 1;
  c->yarn_truncate = get_bool(rs, "truncate", 1);
  if (factor <= 0) factor = c->yarn_orig_max_pos > 0 ? (float)c->max_pos / (float)c->yarn_orig_max_pos : 1.0f;
  c->yarn_factor = factor;
  if (!(c->yarn_orig_max_pos > 0)) return eng_errf(err, errlen, "%s: rope_scaling original_max_position_embeddings must be positive", path);
  if (af > 0) c->rope_attn_factor = af;
  else if (c->yarn_mscale != 0 && c->yarn_mscale_all_dim != 0)
    c->rope_attn_factor = yarn_mscale(factor, c->yarn_mscale) / yarn_mscale(factor, c->yarn_mscale_all_dim);
  else c->rope_attn_factor = yarn_mscale(factor, 1.0);
  return 0;
}

/* Family-specific fields (everything beyond the Mixtral core). */
static int parse_family(eng_config *c, const cJSON *root, const char *path, char *err, size_t errlen) {
  int rc = 0;
  eng_router_cfg *r = &c->router;
  r->kind = ENG_ROUTER_SOFTMAX_TOPK; r->scale = 1.0f; r->n_group = 1; r->topk_group = 1; r->capacity_factor = 1.0f;
  for (int l = 0; l < c->n_layers && l < ENG_MAX_LAYERS; l++) c->moe_layer[l] = 1;
  switch (c->family) {
  case ENG_FAM_MIXTRAL: {
    GI("num_local_experts", -2, &c->n_experts);
    GI("intermediate_size", -2, &c->intermediate);
    c->norm_topk_prob = 1; /* Mixtral always renormalises */
    const cJSON *mr = cJSON_GetObjectItemCaseSensitive(root, "moescope_router");
    if (cJSON_IsObject(mr)) {   /* synthetic routers written by `moescope synth` */
      const cJSON *kind = cJSON_GetObjectItemCaseSensitive(mr, "kind");
      if (!cJSON_IsString(kind)) return eng_errf(err, errlen, "%s: moescope_router.kind must be a string", path);
      if (!strcmp(kind->valuestring, "switch")) {
        r->kind = ENG_ROUTER_SWITCH;
        if ((rc = get_float(mr, "capacity_factor", 1.0, &r->capacity_factor, path, err, errlen))) return rc;
        if (!(r->capacity_factor > 0)) return eng_errf(err, errlen, "%s: capacity_factor must be positive", path);
        c->norm_topk_prob = 0;
      } else if (!strcmp(kind->valuestring, "hierarchical")) {
        r->kind = ENG_ROUTER_HIER;
        if ((rc = get_int(mr, "n_groups", -2, &r->n_group, path, err, errlen))) return rc;
        c->norm_topk_prob = 0;
      } else if (strcmp(kind->valuestring, "softmax_topk")) {
        return eng_errf(err, errlen, "%s: unknown moescope_router.kind '%s' (switch, hierarchical)", path, kind->valuestring);
      }
    }
    break;
  }
  case ENG_FAM_QWEN2_MOE:
  case ENG_FAM_QWEN3_MOE: {
    int q2 = c->family == ENG_FAM_QWEN2_MOE, step = 1;
    GI("num_experts", 0, &c->n_experts);           /* transformers 5 spells it num_local_experts */
    if (c->n_experts == 0) GI("num_local_experts", -2, &c->n_experts);
    GI("moe_intermediate_size", -2, &c->intermediate);
    GI("intermediate_size", 0, &c->dense_intermediate);
    GI("decoder_sparse_step", 1, &step);
    if (q2) {
      GI("shared_expert_intermediate_size", 0, &c->shared_intermediate);
      c->shared_gated = c->n_shared_experts = c->shared_intermediate > 0;
      c->qkv_bias = get_bool(root, "qkv_bias", 1);
    } else {
      c->qkv_bias = c->o_bias = get_bool(root, "attention_bias", 0);
      c->qk_norm = ENG_QKNORM_HEAD;
    }
    c->norm_topk_prob = get_bool(root, "norm_topk_prob", 0);
    if (step < 1) return eng_errf(err, errlen, "%s: decoder_sparse_step must be >= 1", path);
    for (int l = 0; l < c->n_layers && l < ENG_MAX_LAYERS; l++) c->moe_layer[l] = (l + 1) % step == 0;
    const cJSON *ml = cJSON_GetObjectItemCaseSensitive(root, "mlp_only_layers");
    for (const cJSON *x = cJSON_IsArray(ml) ? ml->child : NULL; x; x = x->next) {
      if (!cJSON_IsNumber(x) || x->valuedouble < 0 || x->valuedouble >= c->n_layers || x->valuedouble != floor(x->valuedouble))
        return eng_errf(err, errlen, "%s: mlp_only_layers entries must be layer indices", path);
      c->moe_layer[(int)x->valuedouble] = 0;
    }
    break;
  }
  case ENG_FAM_OLMOE:
    GI("num_experts", 0, &c->n_experts);
    if (c->n_experts == 0) GI("num_local_experts", -2, &c->n_experts);
    GI("intermediate_size", -2, &c->intermediate);
    c->norm_topk_prob = get_bool(root, "norm_topk_prob", 0);
    c->qkv_bias = c->o_bias = get_bool(root, "attention_bias", 0);
    c->qk_norm = ENG_QKNORM_FULL;
    GF("clip_qkv", 0, &c->clip_qkv);
    break;
  case ENG_FAM_DEEPSEEK_V2:
  case ENG_FAM_DEEPSEEK_V3: {
    int v3 = c->family == ENG_FAM_DEEPSEEK_V3, first_dense = 0;
    GI("n_routed_experts", -2, &c->n_experts);
    GI("moe_intermediate_size", -2, &c->intermediate);
    GI("intermediate_size", 0, &c->dense_intermediate);
    GI("n_shared_experts", 0, &c->n_shared_experts);
    GI("first_k_dense_replace", 0, &first_dense);
    GI("n_group", 1, &r->n_group);
    GI("topk_group", 1, &r->topk_group);
    GF("routed_scaling_factor", 1.0, &r->scale);
    GI("q_lora_rank", 0, &c->q_lora_rank);
    GI("kv_lora_rank", -2, &c->kv_lora_rank);
    GI("qk_nope_head_dim", -2, &c->qk_nope_dim);
    GI("qk_rope_head_dim", -2, &c->qk_rope_dim);
    GI("v_head_dim", -2, &c->v_head_dim);
    c->mla = 1;
    c->qkv_bias = c->o_bias = get_bool(root, "attention_bias", 0);
    c->shared_intermediate = c->n_shared_experts * c->intermediate;
    c->rope_interleave = v3 ? get_bool(root, "rope_interleave", 1) : 1;
    for (int l = 0; l < c->n_layers && l < ENG_MAX_LAYERS; l++) c->moe_layer[l] = l >= first_dense;
    if (v3) {
      r->kind = ENG_ROUTER_SIGMOID_GROUP;
      c->norm_topk_prob = get_bool(root, "norm_topk_prob", 1);
    } else {
      const cJSON *tm = cJSON_GetObjectItemCaseSensitive(root, "topk_method");
      const char *m = cJSON_IsString(tm) ? tm->valuestring : "greedy";
      if (!strcmp(m, "group_limited_greedy")) r->kind = ENG_ROUTER_GROUP_LIMITED;
      else if (strcmp(m, "greedy") && strcmp(m, "gready"))
        return eng_errf(err, errlen, "%s: topk_method '%s' is not supported (greedy, group_limited_greedy)", path, m);
      c->norm_topk_prob = 0;   /* HF DeepseekV2Moe never renormalises */
    }
    if (c->n_experts > 0 && (r->n_group < 1 || c->n_experts % r->n_group || r->topk_group < 1 || r->topk_group > r->n_group))
      return eng_errf(err, errlen, "%s: n_group %d / topk_group %d do not fit %d routed experts", path, r->n_group,
                      r->topk_group, c->n_experts);
    if (c->q_lora_rank < 0 || c->kv_lora_rank <= 0 || c->qk_nope_dim < 0 || c->qk_rope_dim <= 0 || c->qk_rope_dim % 2 ||
        c->v_head_dim <= 0 || c->kv_lora_rank > 65536 || c->q_lora_rank > 65536 || c->qk_nope_dim + c->qk_rope_dim > 1024 ||
        c->v_head_dim > 1024)
      return eng_errf(err, errlen, "%s: implausible MLA sizes (lora ranks, qk_nope/qk_rope/v head dims)", path);
    break;
  }
  case ENG_FAM_GPT_OSS: {
    GI("num_local_experts", -2, &c->n_experts);
    GI("intermediate_size", -2, &c->intermediate);
    GI("sliding_window", 0, &c->sliding_window);
    GF("swiglu_limit", 7.0, &c->act_limit);
    c->act_alpha = 1.702f;
    c->expert_act = ENG_ACT_SWIGLU_OAI;
    c->expert_bias = c->router_bias = 1;
    c->attn_sinks = 1;
    c->qkv_bias = c->o_bias = get_bool(root, "attention_bias", 1);
    r->kind = ENG_ROUTER_TOPK_SOFTMAX;
    c->norm_topk_prob = 1;
    const cJSON *lt = cJSON_GetObjectItemCaseSensitive(root, "layer_types");
    int l = 0;
    for (const cJSON *x = cJSON_IsArray(lt) ? lt->child : NULL; x && l < c->n_layers; x = x->next, l++)
      c->sliding[l] = cJSON_IsString(x) && !strcmp(x->valuestring, "sliding_attention");
    if (!cJSON_IsArray(lt))  /* HF default: sliding on even layers */
      for (l = 0; l < c->n_layers && l < ENG_MAX_LAYERS; l++) c->sliding[l] = (l + 1) % 2 != 0;
    if (c->sliding_window < 0) return eng_errf(err, errlen, "%s: sliding_window must be >= 0", path);
    break;
  }
  default: break;
  }
done:
  return rc;
}

int eng_config_load(eng_config *c, const char *path, char *err, size_t errlen) {
  memset(c, 0, sizeof *c);
  char *txt = eng_read_file(path, NULL, (size_t)16 << 20, err, errlen);
  if (!txt) return -1;
  int rc = eng_config_parse(c, txt, path, err, errlen);
  free(txt);
  return rc;
}

int eng_config_parse(eng_config *c, const char *text, const char *path, char *err, size_t errlen) {
  memset(c, 0, sizeof *c);
  cJSON *root = cJSON_Parse(text);
  if (!root || !cJSON_IsObject(root)) { cJSON_Delete(root); return eng_errf(err, errlen, "%s: malformed JSON", path); }
  int rc = 0;
  const cJSON *mt = cJSON_GetObjectItemCaseSensitive(root, "model_type");
  if (!cJSON_IsString(mt)) { rc = eng_errf(err, errlen, "%s: missing string field 'model_type'", path); goto done; }
  snprintf(c->model_type, sizeof c->model_type, "%s", mt->valuestring);
  c->family = ENG_FAM_COUNT;
  for (int f = 0; f < ENG_FAM_COUNT; f++)
    if (!strcmp(c->model_type, eng_family_name((eng_family)f))) c->family = (eng_family)f;
  if (c->family == ENG_FAM_COUNT) {
    rc = eng_errf(err, errlen, "%s: model_type '%s' is not supported (supported: mixtral, qwen2_moe, qwen3_moe, "
                  "olmoe, deepseek_v2, deepseek_v3, gpt_oss)", path, c->model_type);
    goto done;
  }
  const cJSON *td = cJSON_GetObjectItemCaseSensitive(root, "torch_dtype");
  if (!td) td = cJSON_GetObjectItemCaseSensitive(root, "dtype");
  snprintf(c->torch_dtype, sizeof c->torch_dtype, "%s", cJSON_IsString(td) ? td->valuestring : "float32");
  if ((rc = get_int(root, "vocab_size", -2, &c->vocab, path, err, errlen)) ||
      (rc = get_int(root, "hidden_size", -2, &c->hidden, path, err, errlen)) ||
      (rc = get_int(root, "num_hidden_layers", -2, &c->n_layers, path, err, errlen)) ||
      (rc = get_int(root, "num_attention_heads", -2, &c->n_heads, path, err, errlen)) ||
      (rc = get_int(root, "num_key_value_heads", 0, &c->n_kv_heads, path, err, errlen)) ||
      (rc = get_int(root, "head_dim", 0, &c->head_dim, path, err, errlen)) ||
      (rc = get_int(root, "num_experts_per_tok", 2, &c->top_k, path, err, errlen)) ||
      (rc = get_int(root, "max_position_embeddings", 4096, &c->max_pos, path, err, errlen)) ||
      (rc = get_float(root, "rms_norm_eps", 1e-5, &c->rms_eps, path, err, errlen)) ||
      (rc = get_float(root, "rope_theta", 1e6, &c->rope_theta, path, err, errlen)))
    goto done;
  if (c->n_layers <= 0 || c->n_layers > ENG_MAX_LAYERS) {
    rc = eng_errf(err, errlen, "%s: num_hidden_layers %d out of range 1..%d", path, c->n_layers, ENG_MAX_LAYERS);
    goto done;
  }
  if (c->n_kv_heads == 0) c->n_kv_heads = c->n_heads;
  if (c->head_dim == 0 && c->n_heads > 0) c->head_dim = c->hidden / c->n_heads;
  c->rope_attn_factor = 1.0;
  if ((rc = parse_family(c, root, path, err, errlen)) || (rc = parse_rope_scaling(c, root, path, err, errlen))) goto done;
  if (c->mla) {
    c->head_dim = c->qk_nope_dim + c->qk_rope_dim;  /* q/k head width; v uses v_head_dim */
    c->n_kv_heads = c->n_heads;                      /* keys are decompressed per head */
    c->rope_dim = c->qk_rope_dim;
    c->attn_scale = 1.0 / sqrt((double)c->head_dim);
    /* HF DeepseekV2/V3Attention (yarn_apply_mscale): softmax scale x mscale(factor, mscale_all_dim)^2 */
    if (c->rope_yarn && c->yarn_mscale_all_dim != 0) {
      double m = yarn_mscale(c->yarn_factor, c->yarn_mscale_all_dim);
      c->attn_scale *= m * m;
    }
  } else {
    c->v_head_dim = c->head_dim;
    c->rope_dim = c->head_dim;
    c->attn_scale = 1.0 / sqrt((double)c->head_dim);
  }
  if (c->router.kind == ENG_ROUTER_SWITCH) c->top_k = 1;
  {
    eng_router_cfg *r = &c->router;
    r->n_experts = c->n_experts; r->k = c->top_k; r->renorm = c->norm_topk_prob;
  }
  c->tie_embeddings = get_bool(root, "tie_word_embeddings", 0);
  c->bos_id = get_token_id(root, "bos_token_id");
  c->eos_id = get_token_id(root, "eos_token_id");
  if (c->bos_id < -1 || c->eos_id < -1) {
    rc = eng_errf(err, errlen, "%s: field '%s' must be a non-negative integer token id", path,
               c->bos_id < -1 ? "bos_token_id" : "eos_token_id");
  } else if (c->vocab <= 0 || c->hidden <= 0 || c->n_layers <= 0 || c->n_heads <= 0 || c->n_kv_heads <= 0 ||
      c->head_dim <= 0 || c->intermediate <= 0 || c->n_experts <= 0 || c->max_pos <= 0 ||
      c->dense_intermediate < 0 || c->shared_intermediate < 0) {
    rc = eng_errf(err, errlen, "%s: sizes must be positive (vocab, hidden, layers, heads, head_dim, experts)", path);
  } else if (c->n_heads % c->n_kv_heads) {
    rc = eng_errf(err, errlen, "%s: num_attention_heads %d is not a multiple of num_key_value_heads %d", path,
               c->n_heads, c->n_kv_heads);
  } else if (c->top_k <= 0 || c->top_k > c->n_experts) {
    rc = eng_errf(err, errlen, "%s: num_experts_per_tok %d must be in 1..num_local_experts (%d)", path, c->top_k,
               c->n_experts);
  } else if (c->head_dim % 2 || c->head_dim > 1024 || c->rope_dim % 2) {
    rc = eng_errf(err, errlen, "%s: head_dim %d must be even and <= 1024", path, c->head_dim);
  } else if (!(c->rms_eps > 0) || !(c->rope_theta > 0)) {
    rc = eng_errf(err, errlen, "%s: rms_norm_eps and rope_theta must be positive", path);
  } else if ((double)c->vocab * c->hidden > 4e10 || c->n_experts > 4096 || c->intermediate > (1 << 20) ||
             c->dense_intermediate > (1 << 22) || c->shared_intermediate > (1 << 22)) {
    rc = eng_errf(err, errlen, "%s: implausible sizes", path);
  } else if (c->max_pos > (1 << 24)) {
    rc = eng_errf(err, errlen, "%s: max_position_embeddings %d is implausibly large (limit %d)", path, c->max_pos, 1 << 24);
  } else if (c->router.kind == ENG_ROUTER_HIER &&
             (c->router.n_group < 1 || c->n_experts % c->router.n_group || c->top_k > c->n_experts / c->router.n_group)) {
    rc = eng_errf(err, errlen, "%s: hierarchical router: n_groups %d must divide %d experts and leave >= top_k per group",
                  path, c->router.n_group, c->n_experts);
  } else {
    int dense = 0;
    for (int l = 0; l < c->n_layers; l++) dense += !c->moe_layer[l];
    if (dense && c->dense_intermediate <= 0)
      rc = eng_errf(err, errlen, "%s: %d dense layers but no intermediate_size", path, dense);
  }
done:
  cJSON_Delete(root);
  return rc;
}
