/* Loads only the tokenizer of a model (no weights). */
#include <stdio.h>
#include <sys/stat.h>

#include "core/error.h"
#include "gguf.h"
#include "tokenizer_gguf.h"

xd_tokenizer *xd_tokenizer_load(const char *path) {
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
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
