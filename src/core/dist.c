/* Ranks over MPI through the plugin (dist.h). */
#include "core/dist.h"

#include <dlfcn.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/error.h"

static struct {
    int rank, size, up, serialized;
    const xd_mpi_ops *ops;
} g = {0, 1, 0, 0, NULL};

int xd_dist_rank(void) { return g.rank; }
int xd_dist_size(void) { return g.size; }
int xd_dist_serialized(void) { return g.serialized; }

int xd_dist_launched(void) {
    static const char *const vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE"};
    for (size_t i = 0; i < sizeof vars / sizeof *vars; i++) {
        const char *v = getenv(vars[i]);
        if (v && atoi(v) > 0) return atoi(v);
    }
    return 0;
}

static int mpi_fail(int code, const char *what) {
    char t[256];
    g.ops->err_text(code, t, sizeof t);
    return xd_err("MPI (rank %d of %d): %s: %s", g.rank, g.size, what, t);
}

#ifdef XD_HAVE_MPI
/* The plugin: $XD_MPI_PLUGIN, else beside the executable, in the build tree, installed. */
static void *open_plugin(char *tried, size_t cap) {
    char exe[PATH_MAX], path[PATH_MAX + 64];
    const char *where[4];
    int n = 0;
    const char *env = getenv("XD_MPI_PLUGIN");
    if (env && *env) where[n++] = env;
    else {
        ssize_t k = readlink("/proc/self/exe", exe, sizeof exe - 1);
        if (k > 0) {
            exe[k] = 0;
            char *slash = strrchr(exe, '/');
            if (slash) *slash = 0;
            where[n++] = exe;
        }
        where[n++] = XD_MPI_PLUGIN_BUILD_DIR;
        where[n++] = XD_MPI_PLUGIN_INSTALL_DIR;
    }
    tried[0] = 0;
    for (int i = 0; i < n; i++) {
        if (env && *env) snprintf(path, sizeof path, "%s", where[i]);
        else snprintf(path, sizeof path, "%s/libxdistill-mpi.so", where[i]);
        if (access(path, F_OK)) continue;
        void *h = dlopen(path, RTLD_NOW | RTLD_GLOBAL);
        if (h) return h;
        snprintf(tried, cap, "%s", dlerror());
        return NULL;
    }
    snprintf(tried, cap, "libxdistill-mpi.so is in none of: %s%s%s%s%s%s%s", where[0],
             n > 1 ? ", " : "", n > 1 ? where[1] : "", n > 2 ? ", " : "", n > 2 ? where[2] : "",
             n > 3 ? ", " : "", n > 3 ? where[3] : "");
    return NULL;
}
#endif

int xd_dist_init(void) {
    if (g.up) return 0;
    int n = xd_dist_launched();
    if (n <= 0) return 0;
#ifndef XD_HAVE_MPI
    return xd_err("started by a launcher (mpirun) as one of %d ranks, but this xdistill was "
                  "built without MPI (Open MPI's libopenmpi-dev was missing at build time, or "
                  "-DXD_MPI=OFF): install libopenmpi-dev and rebuild, or run it without mpirun",
                  n);
#else
    char why[1024];
    void *h = open_plugin(why, sizeof why);
    if (!h)
        return xd_err("started by mpirun as one of %d ranks, but MPI cannot be loaded: %s "
                      "(is Open MPI installed? apt-get install openmpi-bin libopenmpi3)", n, why);
    const xd_mpi_ops *(*entry)(void) = (const xd_mpi_ops *(*)(void))dlsym(h, "xd_mpi_plugin");
    const xd_mpi_ops *ops = entry ? entry() : NULL;
    if (!ops || ops->abi != XD_MPI_PLUGIN_ABI)
        return xd_err("libxdistill-mpi.so: not this build's MPI plugin (interface %d, expected "
                      "%d): rebuild", ops ? ops->abi : -1, XD_MPI_PLUGIN_ABI);
    g.ops = ops;
    int rank = 0, size = 1, ser = 0, rc = ops->init(&rank, &size, &ser);
    if (rc) return mpi_fail(rc, "MPI_Init_thread");
    g.rank = rank;
    g.size = size;
    g.serialized = ser;
    g.up = 1;
    return 0;
#endif
}

void xd_dist_finalize(void) {
    if (!g.up) return;
    g.ops->finalize();
    g.up = 0;
}

void xd_dist_abort(int code) {
    if (g.up && g.size > 1) g.ops->abort(code);
}

int xd_dist_barrier(void) {
    if (!g.up || g.size == 1) return 0;
    int rc = g.ops->barrier();
    return rc ? mpi_fail(rc, "barrier") : 0;
}

int xd_dist_bcast(void *buf, size_t bytes, int root) {
    if (!g.up || g.size == 1) return 0;
    int rc = g.ops->bcast(buf, bytes, root);
    return rc ? mpi_fail(rc, "broadcast") : 0;
}

int xd_dist_gather(const void *send, void *recv, const size_t *bytes_of, int root) {
    if (!g.up || g.size == 1) {
        if (recv != send && bytes_of[0]) memcpy(recv, send, bytes_of[0]);
        return 0;
    }
    int *cnt = malloc(2 * (size_t)g.size * sizeof(int)), *disp = cnt + g.size;
    if (!cnt) return xd_err("out of memory");
    size_t at = 0;
    for (int r = 0; r < g.size; r++) {
        if (bytes_of[r] > INT_MAX || at > INT_MAX) {
            free(cnt);
            return xd_err("MPI gather: %zu bytes from rank %d (at most 2 GiB a rank and in all)",
                          bytes_of[r], r);
        }
        cnt[r] = (int)bytes_of[r];
        disp[r] = (int)at;
        at += bytes_of[r];
    }
    int rc = g.ops->gatherv(send, cnt[g.rank], recv, cnt, disp, root);
    free(cnt);
    return rc ? mpi_fail(rc, "gather") : 0;
}

int xd_dist_check_same(uint64_t v, const char *what) {
    if (!g.up || g.size == 1) return 0;
    uint64_t *all = malloc((size_t)g.size * sizeof *all);
    if (!all) return xd_err("out of memory");
    int rc = g.ops->allgather(&v, all, sizeof v);
    if (rc) {
        free(all);
        return mpi_fail(rc, "all-gather");
    }
    for (int r = 1; r < g.size; r++)
        if (all[r] != all[0]) {
            xd_err("rank %d's %s differs from rank 0's (hash %016llx vs %016llx): every rank "
                   "must read the same files", r, what, (unsigned long long)all[r],
                   (unsigned long long)all[0]);
            free(all);
            return -1;
        }
    free(all);
    return 0;
}

/* The fixed-order sum (dist.h): per bucket, rank k receives every rank's slice of chunk k
 * (all-to-all), adds them in rank order, and the chunks are all-gathered back. */
typedef void (*add_fn)(void *acc, const void *x, size_t n);
static void add_f32(void *acc, const void *x, size_t n) {
    float *a = acc;
    const float *b = x;
    for (size_t i = 0; i < n; i++) a[i] += b[i];
}
static void add_f64(void *acc, const void *x, size_t n) {
    double *a = acc;
    const double *b = x;
    for (size_t i = 0; i < n; i++) a[i] += b[i];
}
static void add_i64(void *acc, const void *x, size_t n) {
    int64_t *a = acc;
    const int64_t *b = x;
    for (size_t i = 0; i < n; i++) a[i] += b[i];
}

static int sum_fixed(void *x, size_t n, size_t es, add_fn add) {
    if (!g.up || g.size == 1 || n == 0) return 0;
    int N = g.size, me = g.rank, rc = 0;
    size_t bucket = n < XD_DIST_BUCKET ? n : XD_DIST_BUCKET;
    int *sc = malloc(4 * (size_t)N * sizeof(int));
    char *recv = malloc((bucket / (size_t)N + 1) * (size_t)N * es);
    char *acc = malloc((bucket / (size_t)N + 1) * es);
    if (!sc || !recv || !acc) {
        free(sc); free(recv); free(acc);
        return xd_err("out of memory");
    }
    int *sd = sc + N, *rcnt = sc + 2 * N, *rd = sc + 3 * N;
    for (size_t o = 0; o < n && !rc; o += bucket) {
        size_t m = n - o < bucket ? n - o : bucket;
        char *base = (char *)x + o * es;
        size_t mine = m * (size_t)(me + 1) / N - m * (size_t)me / N;
        for (int k = 0; k < N; k++) {
            size_t lo = m * (size_t)k / N, hi = m * (size_t)(k + 1) / N;
            sc[k] = (int)((hi - lo) * es);
            sd[k] = (int)(lo * es);
            rcnt[k] = (int)(mine * es);
            rd[k] = (int)((size_t)k * mine * es);
        }
        if ((rc = g.ops->alltoallv(base, sc, sd, recv, rcnt, rd))) break;
        memcpy(acc, recv, mine * es);
        for (int k = 1; k < N; k++) add(acc, recv + (size_t)k * mine * es, mine);
        rc = g.ops->allgatherv(acc, (int)(mine * es), base, sc, sd);
    }
    free(sc); free(recv); free(acc);
    return rc ? mpi_fail(rc, "sum") : 0;
}

int xd_dist_sum_f32(float *x, size_t n) { return sum_fixed(x, n, sizeof *x, add_f32); }
int xd_dist_sum_f64(double *x, size_t n) { return sum_fixed(x, n, sizeof *x, add_f64); }
int xd_dist_sum_i64(int64_t *x, size_t n) { return sum_fixed(x, n, sizeof *x, add_i64); }
