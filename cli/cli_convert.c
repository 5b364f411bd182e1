/* cli_convert.c — `moescope convert --model DIR --to gguf --type f16|bf16|q8_0 -o FILE`:
 * parses options and calls eng_gguf_convert (engine/eng_gguf_write.c). Parsing only. */
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
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (cli_is_help(a)) {
      printf("usage: moescope convert --model DIR [--to gguf] [--type f16|bf16|q8_0|q4_0|f32] -o FILE\n"
             "Writes a GGUF v3 file (llama.cpp tensor names and metadata, tokenizer embedded) from a\n"
             "Hugging Face model folder (config.json + safetensors). Norms, biases and the routers\n"
             "stay F32; q8_0/q4_0 rows whose length is not a multiple of 32 are written as F16.\n");
      return CLI_OK;
    }
    if (!strcmp(a, "--model") || !strcmp(a, "-m")) { if (!(model = cli_value(argc, argv, &i, C))) return CLI_USAGE; }
    else if (!strcmp(a, "--to")) { if (!(to = cli_value(argc, argv, &i, C))) return CLI_USAGE; }
    else if (!strcmp(a, "--type")) { if (!(type = cli_value(argc, argv, &i, C))) return CLI_USAGE; }
    else if (!strcmp(a, "-o") || !strcmp(a, "--out")) { if (!(out = cli_value(argc, argv, &i, C))) return CLI_USAGE; }
    else return cli_fail(CLI_USAGE, C, "unknown option '%s' (see moescope convert --help)", a);
  }
  if (!model) model = cli_default_model();
  if (!out) return cli_fail(CLI_USAGE, C, "missing -o FILE");
  if (strcmp(to, "gguf")) return cli_fail(CLI_USAGE, C, "--to: unsupported format '%s' (only gguf)", to);
  int t = eng_gguf_out_type(type);
  if (t < 0) return cli_fail(CLI_USAGE, C, "--type: unknown type '%s' (f16, bf16, q8_0, q4_0, f32)", type);
  char err[1024];
  int rc = eng_gguf_convert(model, out, t, progress, NULL, err, sizeof err);
  cli_progress_end();
  if (rc) return cli_fail(CLI_ERR, C, "%s", err);
  fprintf(stderr, "moescope convert: wrote %s (%s)\n", out, type);
  return CLI_OK;
}
