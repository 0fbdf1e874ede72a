/* JSONL reading (jsonl.h). */
#include "jsonl.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "core/error.h"

int xd_is_blank(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!(s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r' || s[i] == '\v' ||
              s[i] == '\f'))
            return 0;
    return 1;
}

const char *xd_json_type_name(const json_t *v) {
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a number";
    case JSON_TRUE: case JSON_FALSE: return "a boolean";
    default: return "null";
    }
}

int xd_jsonl_each(const char *path, int (*fn)(void *ctx, const char *path, unsigned long lineno,
                                              json_t *value),
                  void *ctx) {
    FILE *f = fopen(path, "rb");
    if (!f) return xd_err("%s: cannot open: %s", path, strerror(errno));
    char *line = NULL;
    size_t cap = 0;
    ssize_t got;
    unsigned long lineno = 0;
    int rc = 0;
    while (rc == 0 && (got = getline(&line, &cap, f)) >= 0) {
        lineno++;
        size_t n = (size_t)got;
        while (n && (line[n - 1] == '\n' || line[n - 1] == '\r')) n--;
        char *rec = line;
        if (lineno == 1 && n >= 3 && !memcmp(line, "\xEF\xBB\xBF", 3)) rec += 3, n -= 3; /* BOM */
        if (xd_is_blank(rec, n)) continue; /* blank lines between records are fine */
        json_error_t je;
        json_t *o = json_loadb(rec, n, JSON_ALLOW_NUL, &je);
        if (!o) {
            rc = xd_err("%s: line %lu: malformed JSON at column %d: %s", path, lineno, je.column,
                        je.text);
            break;
        }
        rc = fn(ctx, path, lineno, o);
        json_decref(o);
    }
    if (rc == 0 && ferror(f)) rc = xd_err("%s: read error after line %lu", path, lineno);
    free(line);
    fclose(f);
    return rc;
}
