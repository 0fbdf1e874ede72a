#include "core/mem.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <unistd.h>

#include "core/error.h"

int xd_grow(void **p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return 0;
    size_t c = *cap ? *cap : 64;
    while (c < need) {
        if (c > SIZE_MAX / 2 / elem) return xd_err("out of memory (%zu elements of %zu bytes)", need, elem);
        c *= 2;
    }
    void *q = realloc(*p, c * elem);
    if (!q) return xd_err("out of memory (%zu bytes)", c * elem);
    *p = q;
    *cap = c;
    return 0;
}

double xd_rss_mib(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    long size = 0, resident = -1;
    if (f) {
        if (fscanf(f, "%ld %ld", &size, &resident) != 2) resident = -1;
        fclose(f);
    }
    long page = sysconf(_SC_PAGESIZE);
    return resident < 0 || page <= 0 ? -1.0 : (double)resident * (double)page / 1048576.0;
}

double xd_peak_rss_mib(void) {
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru)) return -1.0;
    return (double)ru.ru_maxrss / 1024.0; /* kilobytes on Linux */
}
