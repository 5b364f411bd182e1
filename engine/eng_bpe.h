/* eng_bpe.h — internal to the tokenizer (eng_tokenizer.c): the hash maps it needs
 * (byte string -> id, token pair -> merge rank) and the BPE merge loop of one word.
 * Not a public API; nothing outside engine/eng_tokenizer.c should include it. */
#ifndef MOESCOPE_ENG_BPE_H
#define MOESCOPE_ENG_BPE_H

#include <stddef.h>
#include <stdint.h>

/* Byte string -> (val, val2). Keys are NOT copied: they must outlive the map. */
typedef struct {
  const char *key;
  uint32_t len;
  int val, val2;
} eng_smap_ent;
typedef struct {
  eng_smap_ent *e; /* key == NULL: empty slot */
  size_t cap, n;
} eng_smap;

int eng_smap_init(eng_smap *m, size_t expect);                  /* 0 or -1 (OOM) */
void eng_smap_free(eng_smap *m);
/* Inserts or overwrites. 0 or -1 (OOM). */
int eng_smap_put(eng_smap *m, const char *key, size_t len, int val, int val2);
/* The entry for key, or NULL. */
const eng_smap_ent *eng_smap_get(const eng_smap *m, const char *key, size_t len);

/* (left id, right id) -> (rank, merged id). */
typedef struct {
  uint64_t key;
  int rank, id; /* rank < 0: empty slot */
} eng_pmap_ent;
typedef struct {
  eng_pmap_ent *e;
  size_t cap, n;
} eng_pmap;

int eng_pmap_init(eng_pmap *m, size_t expect);
void eng_pmap_free(eng_pmap *m);
int eng_pmap_put(eng_pmap *m, int a, int b, int rank, int id); /* overwrites; 0 or -1 */
/* Rank of the merge (a, b) and its id in *id, or -1 when there is none. */
int eng_pmap_get(const eng_pmap *m, int a, int b, int *id);

/* Scratch memory for eng_bpe_merge, reused across words (zero-initialise it). */
typedef struct {
  int *prev, *next;
  int64_t *heap; /* (rank << 32) | position */
  size_t cap;
} eng_bpe_scratch;
void eng_bpe_scratch_free(eng_bpe_scratch *s);

/* Applies the merges to the n symbols in syms (lowest rank first, leftmost first among
 * equal ranks) and compacts the result into syms. Returns the new count, -1 on OOM. */
int eng_bpe_merge(const eng_pmap *m, eng_bpe_scratch *s, int *syms, int n);

#endif
