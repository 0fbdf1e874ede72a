/* libxdistill-mpi.so: the MPI calls of src/core/dist.h, as a plugin the library loads
 * only when a launcher started the process (so single-process runs never need libmpi).
 * Thin wrappers on MPI_COMM_WORLD; everything is bytes (MPI_BYTE), the arithmetic stays in
 * dist.c where its order is fixed. Errors return to the caller (MPI_ERRORS_RETURN). */
#include <mpi.h>
#include <stdio.h>
#include <string.h>

#include "core/dist.h"

static int p_init(int *rank, int *size, int *serialized) {
    int provided, rc = MPI_Init_thread(NULL, NULL, MPI_THREAD_SERIALIZED, &provided);
    if (rc != MPI_SUCCESS) return rc;
    *serialized = provided >= MPI_THREAD_SERIALIZED;
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    if ((rc = MPI_Comm_rank(MPI_COMM_WORLD, rank)) != MPI_SUCCESS) return rc;
    return MPI_Comm_size(MPI_COMM_WORLD, size);
}

static int p_finalize(void) { return MPI_Finalize(); }
static void p_abort(int code) { MPI_Abort(MPI_COMM_WORLD, code); }
static int p_barrier(void) { return MPI_Barrier(MPI_COMM_WORLD); }

/* MPI counts are int: large buffers go in pieces of at most 1 GiB. */
static int p_bcast(void *buf, size_t bytes, int root) {
    const size_t piece = (size_t)1 << 30;
    for (size_t o = 0; o < bytes; o += piece) {
        size_t n = bytes - o < piece ? bytes - o : piece;
        int rc = MPI_Bcast((char *)buf + o, (int)n, MPI_BYTE, root, MPI_COMM_WORLD);
        if (rc != MPI_SUCCESS) return rc;
    }
    return MPI_SUCCESS;
}

static int p_allgather(const void *send, void *recv, size_t bytes) {
    return MPI_Allgather(send, (int)bytes, MPI_BYTE, recv, (int)bytes, MPI_BYTE, MPI_COMM_WORLD);
}

static int p_alltoallv(const void *send, const int *scount, const int *sdispl, void *recv,
                       const int *rcount, const int *rdispl) {
    return MPI_Alltoallv(send, scount, sdispl, MPI_BYTE, recv, rcount, rdispl, MPI_BYTE,
                         MPI_COMM_WORLD);
}

static int p_allgatherv(const void *send, int scount, void *recv, const int *rcount,
                        const int *rdispl) {
    return MPI_Allgatherv(send, scount, MPI_BYTE, recv, rcount, rdispl, MPI_BYTE, MPI_COMM_WORLD);
}

static int p_gatherv(const void *send, int scount, void *recv, const int *rcount,
                     const int *rdispl, int root) {
    return MPI_Gatherv(send, scount, MPI_BYTE, recv, rcount, rdispl, MPI_BYTE, root,
                       MPI_COMM_WORLD);
}

static void p_err_text(int code, char *buf, size_t cap) {
    char s[MPI_MAX_ERROR_STRING];
    int n = 0;
    if (MPI_Error_string(code, s, &n) != MPI_SUCCESS) snprintf(s, sizeof s, "MPI error %d", code);
    snprintf(buf, cap, "%s", s);
}

static const char *p_version(void) {
    static char v[MPI_MAX_LIBRARY_VERSION_STRING];
    int n = 0;
    if (MPI_Get_library_version(v, &n) != MPI_SUCCESS) return "MPI";
    char *nl = strchr(v, '\n');
    if (nl) *nl = 0;
    char *comma = strchr(v, ',');
    if (comma) *comma = 0;
    return v;
}

__attribute__((visibility("default"))) const xd_mpi_ops *xd_mpi_plugin(void) {
    static const xd_mpi_ops ops = {XD_MPI_PLUGIN_ABI, p_init,      p_finalize,  p_abort,
                                   p_barrier,         p_bcast,     p_allgather, p_alltoallv,
                                   p_allgatherv,      p_gatherv,   p_err_text,
                                   p_version};
    return &ops;
}
