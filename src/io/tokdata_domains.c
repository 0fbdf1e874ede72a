/* Domains of token data (docs/data.md "Domains"): valid names, the set of
 * names met while preparing, --domain rule:FILE rules (PCRE2), and
 * `data split` (one token file per domain). */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <errno.h>
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../core/error.h"
#include "../core/hash.h"
#include "tokdata_internal.h"

typedef unsigned long long ull;

const char *xd_domain_name_problem(const char *name, size_t len) {
    if (len == 0) return "is empty";
    if (len > XD_TOKDATA_MAX_DOMAIN_NAME) return "is longer than 64 bytes";
    if (name[0] == '.') return "starts with '.'";
    for (size_t i = 0; i < len; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return "has a character other than letters, digits, '.', '_' and '-' (it names a file)";
    }
    return NULL;
}

/* slot index of a name: FNV-1a 64 (core/hash.h), low bits (in memory only) */
static uint32_t name_hash(const char *name, size_t len) {
    return (uint32_t)xd_fnv1a64(XD_FNV1A64_INIT, name, len);
}

/* The slot holding name, or the empty slot where it would go. */
static uint32_t find_slot(const xd_domain_set *s, const char *name, size_t len) {
    uint32_t mask = s->n_slot - 1, at = name_hash(name, len) & mask;
    while (s->slot[at]) {
        const char *x = s->names[s->slot[at] - 1];
        if (strlen(x) == len && !memcmp(x, name, len)) break;
        at = (at + 1) & mask;
    }
    return at;
}

/* Room for cap names; the index is rebuilt at twice that many slots. */
static int grow_set(xd_domain_set *s, uint32_t cap) {
    char **q = realloc(s->names, cap * sizeof *q);
    if (!q) return xd_err("out of memory");
    s->names = q;
    s->cap = cap;
    uint32_t *slot = calloc(2 * (size_t)cap, sizeof *slot);
    if (!slot) return xd_err("out of memory");
    free(s->slot);
    s->slot = slot;
    s->n_slot = 2 * cap;
    for (uint32_t i = 0; i < s->n; i++)
        s->slot[find_slot(s, s->names[i], strlen(s->names[i]))] = i + 1;
    return 0;
}

int xd_domain_set_intern(xd_domain_set *s, const char *name, size_t len, uint32_t *id) {
    if (s->n_slot) {
        uint32_t at = find_slot(s, name, len);
        if (s->slot[at]) {
            *id = s->slot[at] - 1;
            return 0;
        }
    }
    if (s->n == XD_TOKDATA_MAX_DOMAINS)
        return xd_err("data prep: more than %u domains", XD_TOKDATA_MAX_DOMAINS);
    if (s->n == s->cap && grow_set(s, s->cap ? 2 * s->cap : 16)) return -1;
    char *copy = malloc(len + 1);
    if (!copy) return xd_err("out of memory");
    memcpy(copy, name, len);
    copy[len] = 0;
    s->names[s->n] = copy;
    s->slot[find_slot(s, name, len)] = s->n + 1;
    *id = s->n++;
    return 0;
}

void xd_domain_set_free(xd_domain_set *s) {
    for (uint32_t i = 0; i < s->n; i++) free(s->names[i]);
    free(s->names);
    free(s->slot);
    memset(s, 0, sizeof *s);
}

/* ---- rules ------------------------------------------------------------------ */

typedef struct {
    char name[XD_TOKDATA_MAX_DOMAIN_NAME + 1];
    pcre2_code *re;
} rule;

struct xd_domain_rules {
    rule *r;
    int n;
    pcre2_match_data *md;
};

void xd_domain_rules_free(xd_domain_rules *r) {
    if (!r) return;
    for (int i = 0; i < r->n; i++) pcre2_code_free(r->r[i].re);
    free(r->r);
    if (r->md) pcre2_match_data_free(r->md);
    free(r);
}

/* One rule per line: NAME, blanks, then the regex (the rest of the line).
 * Blank lines and lines starting with '#' are skipped. */
xd_domain_rules *xd_domain_rules_load(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        xd_err("%s: cannot open the domain rules: %s", path, strerror(errno));
        return NULL;
    }
    xd_domain_rules *r = calloc(1, sizeof *r);
    char *line = NULL;
    size_t cap = 0;
    ssize_t got;
    unsigned long lineno = 0;
    int ok = r != NULL;
    if (!r) xd_err("out of memory");
    while (ok && (got = getline(&line, &cap, f)) >= 0) {
        lineno++;
        size_t n = (size_t)got;
        while (n && (line[n - 1] == '\n' || line[n - 1] == '\r')) n--;
        line[n] = 0;
        size_t a = 0;
        while (a < n && (line[a] == ' ' || line[a] == '\t')) a++;
        if (a == n || line[a] == '#') continue;
        size_t b = a;
        while (b < n && line[b] != ' ' && line[b] != '\t') b++;
        size_t c = b;
        while (c < n && (line[c] == ' ' || line[c] == '\t')) c++;
        const char *why = xd_domain_name_problem(line + a, b - a);
        if (why) {
            xd_err("%s: line %lu: domain name \"%.*s\" %s", path, lineno, (int)(b - a > 80 ? 80 : b - a),
                   line + a, why);
            ok = 0;
            break;
        }
        if (c == n) {
            xd_err("%s: line %lu: rule \"%.*s\" has no regex (expected NAME REGEX)", path, lineno,
                   (int)(b - a), line + a);
            ok = 0;
            break;
        }
        rule *q = realloc(r->r, (size_t)(r->n + 1) * sizeof *q);
        if (!q) { xd_err("out of memory"); ok = 0; break; }
        r->r = q;
        rule *x = &r->r[r->n];
        memcpy(x->name, line + a, b - a);
        x->name[b - a] = 0;
        int code;
        PCRE2_SIZE at;
        x->re = pcre2_compile((PCRE2_SPTR)(line + c), n - c,
                              PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &code, &at, NULL);
        if (!x->re) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(code, msg, sizeof msg);
            xd_err("%s: line %lu: regex of rule \"%s\" does not compile at offset %zu: %s", path,
                   lineno, x->name, (size_t)at, (const char *)msg);
            ok = 0;
            break;
        }
        pcre2_jit_compile(x->re, PCRE2_JIT_COMPLETE); /* the interpreter is the fallback */
        r->n++;
    }
    if (ok && ferror(f)) {
        xd_err("%s: read error after line %lu", path, lineno);
        ok = 0;
    }
    if (ok && r->n == 0) {
        xd_err("%s: no rules (expected lines NAME REGEX)", path);
        ok = 0;
    }
    if (ok && !(r->md = pcre2_match_data_create(1, NULL))) {
        xd_err("out of memory");
        ok = 0;
    }
    free(line);
    fclose(f);
    if (!ok) {
        xd_domain_rules_free(r);
        return NULL;
    }
    return r;
}

int xd_domain_rules_match(xd_domain_rules *r, const char *text, size_t n, const char **name) {
    for (int i = 0; i < r->n; i++) {
        int rc = pcre2_match(r->r[i].re, (PCRE2_SPTR)text, n, 0, 0, r->md, NULL);
        if (rc >= 0) {
            *name = r->r[i].name;
            return 0;
        }
        if (rc != PCRE2_ERROR_NOMATCH) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(rc, msg, sizeof msg);
            return xd_err("domain rule \"%s\": matching failed: %s", r->r[i].name,
                          (const char *)msg);
        }
    }
    *name = "other";
    return 0;
}

/* ---- data split -------------------------------------------------------------- */

static int write_domain(const xd_tokdata *d, uint32_t k, const char *dir, uint64_t *order) {
    const xd_tokdata_header *h = xd_tokdata_header_of(d);
    const uint64_t *off = xd_tokdata_doc_offsets(d);
    const char *name = xd_tokdata_domain_name(d, k);
    uint64_t n = 0, n_train = 0, n_tok = 0;
    for (uint64_t i = 0; i < h->n_docs; i++)
        if (xd_tokdata_doc_domain(d, i) == k) {
            order[n++] = i;
            n_train += i < h->n_train_docs;
            n_tok += off[i + 1] - off[i];
        }
    if (n == 0)
        return xd_err("%s: domain \"%s\" has no documents", xd_tokdata_path(d), name);
    char path[4096];
    if ((size_t)snprintf(path, sizeof path, "%s/%s.tok", dir, name) >= sizeof path)
        return xd_err("%s: output path too long", dir);
    xd_tokdata_header o = *h;
    o.n_docs = n;
    o.n_train_docs = n_train;
    o.n_tokens = n_tok;
    /* the header's flags are copied: a context mask travels with its documents */
    xd_doc_source src = {xd_tokdata_raw_tokens(d), h->token_bytes, off, order, NULL, &name, 1,
                         xd_tokdata_context_mask(d)};
    return xd_tokdata_write_docs(path, &o, &src);
}

int xd_tokdata_split_domains(const xd_tokdata *d, const char *dir, const char *const *only,
                             int n_only) {
    if (!d || !dir || !*dir || (n_only && !only)) return xd_err("data split: invalid arguments");
    uint32_t nd = xd_tokdata_n_domains(d);
    if (nd == 0)
        return xd_err("%s: no domain table (make the data with `xdistill data prep --domain "
                      "file|field:NAME|rule:FILE`)",
                      xd_tokdata_path(d));
    uint32_t *pick = malloc((n_only ? (size_t)n_only : nd) * sizeof *pick);
    uint64_t *order = malloc(xd_tokdata_header_of(d)->n_docs * sizeof *order);
    int rc = -1, n_pick = 0;
    if (!pick || !order) { xd_err("out of memory"); goto done; }
    if (!n_only)
        for (uint32_t k = 0; k < nd; k++) pick[n_pick++] = k;
    for (int j = 0; j < n_only; j++) {
        uint32_t k = 0;
        while (k < nd && strcmp(xd_tokdata_domain_name(d, k), only[j])) k++;
        if (k == nd) {
            char list[512] = "";
            size_t used = 0;
            for (uint32_t i = 0; i < nd && used < sizeof list - 8; i++)
                used += (size_t)snprintf(list + used, sizeof list - used, "%s%s", i ? ", " : "",
                                         xd_tokdata_domain_name(d, i));
            xd_err("%s: no domain \"%s\" (its domains: %s)", xd_tokdata_path(d), only[j], list);
            goto done;
        }
        pick[n_pick++] = k;
    }
    struct stat st;
    if (stat(dir, &st) == 0) {
        if (!S_ISDIR(st.st_mode)) { xd_err("%s: exists and is not a directory", dir); goto done; }
    } else if (mkdir(dir, 0755)) {
        xd_err("%s: cannot create the directory: %s", dir, strerror(errno));
        goto done;
    }
    for (int j = 0; j < n_pick; j++)
        if (write_domain(d, pick[j], dir, order)) goto done;
    rc = 0;
done:
    free(pick);
    free(order);
    return rc;
}
