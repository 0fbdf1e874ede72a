/* Whole-file reads and stat tests (file.h). */
#include "file.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "error.h"

int xd_read_stream(FILE *f, const char *what, char **data, size_t *len) {
    size_t cap = 1 << 16, n = 0, k;
    char *buf = malloc(cap);
    if (!buf) return xd_err("out of memory reading %s", what);
    while ((k = fread(buf + n, 1, cap - n - 1, f)) > 0) {
        n += k;
        if (n + 1 == cap) {
            char *nb = cap > ((size_t)-1) / 2 ? NULL : realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                return xd_err("out of memory reading %s (%zu bytes)", what, cap);
            }
            buf = nb;
            cap *= 2;
        }
    }
    if (ferror(f)) {
        free(buf);
        return xd_err("%s: read error", what);
    }
    buf[n] = 0;
    *data = buf;
    *len = n;
    return 0;
}

int xd_read_file(const char *path, char **data, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return xd_err("%s: cannot open: %s", path, strerror(errno));
    int rc = xd_read_stream(f, path, data, len);
    fclose(f);
    return rc;
}

int xd_path_join(char *out, size_t cap, const char *dir, const char *name) {
    if ((size_t)snprintf(out, cap, "%s/%s", dir, name) >= cap)
        return xd_err("%s/%s: path too long", dir, name);
    return 0;
}

int xd_is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

int xd_is_file(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}
