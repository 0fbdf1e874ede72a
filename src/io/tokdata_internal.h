/* Shared by the token-data writer (tokdata.c) and the domain code
 * (tokdata_domains.c): the document source a file is written from, and the
 * domain names. Not part of the public API. */
#ifndef XD_TOKDATA_INTERNAL_H
#define XD_TOKDATA_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "tokdata.h"

/* The documents to write: doc order[d] (identity if order is NULL) of a
 * source token array (u16, or u32/int32 when src_bytes is 4) whose doc i is
 * [src_off[i], src_off[i+1]). With XD_TOKDATA_FLAG_DOMAINS in the header's
 * flags, the table names[0 .. n_names) is written and doc d gets domain
 * src_dom[order[d]] (0 when src_dom is NULL). With XD_TOKDATA_FLAG_MASK,
 * the context mask is written last: src_mask holds one byte per source token,
 * indexed like src (it must not be NULL then). */
typedef struct {
    const void *src;
    unsigned src_bytes;
    const uint64_t *src_off;
    const uint64_t *order;
    const uint32_t *src_dom;
    const char *const *names;
    uint32_t n_names;
    const uint8_t *src_mask;
} xd_doc_source;

/* Writes the file atomically (io/atomic.h: PATH.tmp.<pid>, fsync, rename). */
int xd_tokdata_write_docs(const char *path, const xd_tokdata_header *h, const xd_doc_source *s);

/* The token array of an open file (u16 or u32 per its header). */
const void *xd_tokdata_raw_tokens(const xd_tokdata *d);

/* Domain names in order of first appearance, with an open-addressing hash
 * index (FNV-1a, linear probing) so that interning is O(1) however many
 * domains there are. */
typedef struct {
    char **names;
    uint32_t n, cap;
    uint32_t *slot;   /* [n_slot]: id + 1, 0 = empty; n_slot a power of two >= 2 cap */
    uint32_t n_slot;
} xd_domain_set;

/* NULL if name[0 .. len) is a valid domain name (1 … 64 bytes of
 * [A-Za-z0-9._-], not starting with '.'), else what is wrong with it. */
const char *xd_domain_name_problem(const char *name, size_t len);
/* The id of name (added if new). The name must be valid. */
int xd_domain_set_intern(xd_domain_set *s, const char *name, size_t len, uint32_t *id);
void xd_domain_set_free(xd_domain_set *s);

/* Rules for --domain rule:FILE (see docs/data.md). */
typedef struct xd_domain_rules xd_domain_rules;
xd_domain_rules *xd_domain_rules_load(const char *path);
/* The domain name of the first rule matching text[0 .. n), or "other". */
int xd_domain_rules_match(xd_domain_rules *r, const char *text, size_t n, const char **name);
void xd_domain_rules_free(xd_domain_rules *r);

#endif
