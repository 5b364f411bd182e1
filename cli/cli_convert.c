/* cli_convert.c — `moescope convert --model DIR --to gguf --type f16|bf16|q8_0|q4_k|... -o FILE`:
 * parses options and calls eng_gguf_convert_ex (engine/eng_gguf_write.c). Parsing only.
 * Two testing options: --no-hf-config (only llama.cpp's metadata, as other tools write) and
 * --split-kv-b (DeepSeek kv_b_proj as newer llama.cpp's attn_k_b + attn_v_b). */
#include "cli/cli.h"
#include "engine/eng_gguf.h"

#include <stdio.h>
#include <string.h>

static void progress(void *user, double done, double total) {
  (void)user;
  cli_progress("convert", done, total);
}

int cli_convert(int argc, char **argv) {
  const char *C = "convert", *model = NULL, *to = "gguf", *type = "f16", *out = NULL;
  int flags = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (cli_is_help(a)) {
      printf("usage: moescope convert --model DIR [--to gguf] [--type f16|bf16|q8_0|q4_0|q4_k|q5_k|q6_k|f32] -o FILE\n"
             "                        [--no-hf-config] [--split-kv-b]\n"
             "Writes a GGUF v3 file (llama.cpp tensor names and metadata, tokenizer embedded) from a\n"
             "Hugging Face model folder (config.json + safetensors). Norms, biases and the routers\n"
             "stay F32; q8_0/q4_0 rows whose length is not a multiple of 32 are written as F16;\n"
             "q4_k/q5_k/q6_k rows not a multiple of 256 are written as Q8_0 (multiple of 32) or F16.\n"
             "The source config.json is stored too (key moescope.hf_config) and preferred on load.\n"
             "  --no-hf-config  write only llama.cpp metadata, as other tools do (plus a moescope.*\n"
             "                  key where llama.cpp has none for a value the model uses)\n"
             "  --split-kv-b    DeepSeek: kv_b_proj as attn_k_b + attn_v_b, as newer llama.cpp writes\n");
      return CLI_OK;
    }
    if (!strcmp(a, "--model") || !strcmp(a, "-m")) { if (!(model = cli_value(argc, argv, &i, C))) return CLI_USAGE; }
    else if (!strcmp(a, "--to")) { if (!(to = cli_value(argc, argv, &i, C))) return CLI_USAGE; }
    else if (!strcmp(a, "--type")) { if (!(type = cli_value(argc, argv, &i, C))) return CLI_USAGE; }
    else if (!strcmp(a, "--no-hf-config")) flags |= ENG_GGUF_CONVERT_NO_HF_CONFIG;
    else if (!strcmp(a, "--split-kv-b")) flags |= ENG_GGUF_CONVERT_SPLIT_KV_B;
    else if (!strcmp(a, "-o") || !strcmp(a, "--out")) { if (!(out = cli_value(argc, argv, &i, C))) return CLI_USAGE; }
    else return cli_fail(CLI_USAGE, C, "unknown option '%s' (see moescope convert --help)", a);
  }
  if (!model) model = cli_default_model();
  if (!out) return cli_fail(CLI_USAGE, C, "missing -o FILE");
  if (strcmp(to, "gguf")) return cli_fail(CLI_USAGE, C, "--to: unsupported format '%s' (only gguf)", to);
  int t = eng_gguf_out_type(type);
  if (t < 0) return cli_fail(CLI_USAGE, C, "--type: unknown type '%s' (f16, bf16, q8_0, q4_0, q4_k, q5_k, q6_k, f32)", type);
  char err[1024];
  int rc = eng_gguf_convert_ex(model, out, t, flags, progress, NULL, err, sizeof err);
  cli_progress_end();
  if (rc) return cli_fail(CLI_ERR, C, "%s", err);
  fprintf(stderr, "moescope convert: wrote %s (%s)\n", out, type);
  return CLI_OK;
}
