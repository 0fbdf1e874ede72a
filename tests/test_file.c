/* core/file.h: whole-file reads (binary content, NUL-terminated, sizes
 * around the first buffer's), errors naming the file, path joining and the
 * stat tests. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/file.h"
#include "test.h"
#include "xdistill.h"

int main(void) {
    char dir[] = "/tmp/xd_file_XXXXXX", p[256];
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    snprintf(p, sizeof p, "%s/f.bin", dir);
    const size_t sizes[] = {0, 1, 65535, 65536, 65537, 300000};
    for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
        size_t n = sizes[k];
        char *w = malloc(n + 1);
        for (size_t i = 0; i < n; i++) w[i] = (char)(i * 7 % 256); /* NULs included */
        FILE *f = fopen(p, "wb");
        fwrite(w, 1, n, f);
        fclose(f);
        char *d = NULL;
        size_t len = 12345;
        CHECK(xd_read_file(p, &d, &len) == 0 && len == n && !memcmp(d, w, n) && d[n] == 0,
              "read %zu bytes: %s", n, xd_last_error());
        free(d);
        free(w);
    }
    char *d = (char *)p;
    size_t len = 7;
    snprintf(p, sizeof p, "%s/missing", dir);
    CHECK(xd_read_file(p, &d, &len) == -1 && d == (char *)p && len == 7 &&
              strstr(xd_last_error(), p) && strstr(xd_last_error(), "cannot open"),
          "missing file: %s", xd_last_error());
    CHECK(xd_is_dir(dir) && !xd_is_file(dir), "a directory");
    snprintf(p, sizeof p, "%s/f.bin", dir);
    CHECK(xd_is_file(p) && !xd_is_dir(p), "a file");
    CHECK(!xd_is_file("/nonexistent/x") && !xd_is_dir("/nonexistent/x"), "nothing");
    char small[8];
    CHECK(xd_path_join(small, sizeof small, "ab", "cde") == 0 && !strcmp(small, "ab/cde"), "join");
    CHECK(xd_path_join(small, sizeof small, "abc", "defg") == -1 &&
              strstr(xd_last_error(), "abc/defg: path too long"),
          "join too long: %s", xd_last_error());
    unlink(p);
    rmdir(dir);
    return test_summary("test_file");
}
