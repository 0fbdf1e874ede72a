#include "mapfile.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"

int xd_map_file(const char *path, size_t min_bytes, const char *what, uint8_t **map,
                size_t *size) {
    *map = NULL;
    *size = 0;
    int fd = open(path, O_RDONLY);
    struct stat st;
    if (fd < 0) return xd_err("%s: cannot open: %s", path, strerror(errno));
    if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
        close(fd);
        return xd_err("%s: not a regular file", path);
    }
    size_t n = (size_t)st.st_size;
    if (n < min_bytes) {
        close(fd);
        return xd_err("%s: header: the file has %zu bytes, too small for the %zu-byte header "
                      "(truncated, or not a %s)", path, n, min_bytes, what);
    }
    void *m = mmap(NULL, n, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (m == MAP_FAILED) return xd_err("%s: mmap failed: %s", path, strerror(errno));
    *map = m;
    *size = n;
    return 0;
}
