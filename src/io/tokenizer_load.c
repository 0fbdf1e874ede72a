/* Loads only the tokenizer of a model (no weights). */
#include <stdio.h>

#include "core/error.h"
#include "core/file.h"
#include "gguf.h"
#include "tokenizer_gguf.h"

xd_tokenizer *xd_tokenizer_load(const char *path) {
    if (xd_is_dir(path)) {
        char p[1024];
        snprintf(p, sizeof p, "%s/tokenizer.json", path);
        return xd_tokenizer_load_json(p);
    }
    gguf_file *g = xd_gguf_open(path);
    if (!g) return NULL;
    xd_tokenizer *t = xd_tokenizer_from_gguf(g);
    xd_gguf_close(g);
    return t;
}
