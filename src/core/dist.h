/* Several processes (ranks) working as one, over MPI (docs/scale.md). One code path for
 * one rank and for many: without a launcher (mpirun) the process is rank 0 of 1 and every
 * call here is a no-op that succeeds.
 *
 * The MPI calls live in a plugin, libxdistill-mpi.so (src/mpi/plugin.c, built when Open MPI
 * is found and XD_MPI is on), which xd_dist_init loads only when the environment says a
 * launcher started the process. So a single-process run never needs libmpi, and a binary
 * started by mpirun without a usable MPI says why instead of failing in the dynamic loader.
 *
 * Reductions are done in a fixed order: element i of the result is
 * ((x_0[i] + x_1[i]) + x_2[i]) + … over ranks 0, 1, 2, …, whatever the MPI library's own
 * algorithms, so a run repeated with the same number of ranks is bit-identical. They are
 * bandwidth-optimal (a reduce-scatter by all-to-all, each rank summing its chunk, then an
 * all-gather) and work in buckets of at most XD_DIST_BUCKET elements. */
#ifndef XD_DIST_H
#define XD_DIST_H

#include <stddef.h>
#include <stdint.h>

#define XD_DIST_BUCKET (1u << 22) /* elements per reduction round (16 MiB of floats) */

/* The number of ranks the launcher's environment announces (Open MPI's
 * OMPI_COMM_WORLD_SIZE, or PMI_SIZE), 0 when not started by a launcher. */
int xd_dist_launched(void);
/* Joins the job when started by a launcher (loads the plugin, MPI_Init_thread asking for
 * MPI_THREAD_SERIALIZED); otherwise nothing. -1 with the reason when the launcher started us
 * but this build has no MPI or the plugin (or libmpi) cannot be loaded. */
int xd_dist_init(void);
/* Leaves the job (MPI_Finalize). Idempotent. */
void xd_dist_finalize(void);
/* Ends every rank of the job at once with exit status code (MPI_Abort): for a rank whose
 * error the others cannot see, which would otherwise wait forever in a collective. */
void xd_dist_abort(int code);

int xd_dist_rank(void);
int xd_dist_size(void);
/* 1 when a thread other than the main one may make the calls here, as long as no two
 * threads call at once (the MPI library granted MPI_THREAD_SERIALIZED): the trainer's
 * gradient reduction then overlaps the backward (train/grad_sync.h). */
int xd_dist_serialized(void);

/* In place on every rank: x = Σ_r x_r, summed in rank order (see above). */
int xd_dist_sum_f32(float *x, size_t n);
int xd_dist_sum_f64(double *x, size_t n);
int xd_dist_sum_i64(int64_t *x, size_t n);
/* bytes at buf from rank root to every rank. */
int xd_dist_bcast(void *buf, size_t bytes, int root);
int xd_dist_barrier(void);
/* Rank root receives every rank's bytes, packed in rank order into recv: rank r sends
 * bytes_of[r] bytes (the same array on every rank; each below 2 GiB). recv is only
 * read on root (NULL elsewhere). */
int xd_dist_gather(const void *send, void *recv, const size_t *bytes_of, int root);
/* -1 naming the ranks that disagree when v is not the same on every rank ("rank 1's
 * WHAT differs from rank 0's: HASH vs HASH"); the same answer on every rank. */
int xd_dist_check_same(uint64_t v, const char *what);

/* The plugin's interface (one struct, versioned): thin wrappers of MPI's calls on
 * MPI_COMM_WORLD, counts and displacements in bytes. Returns 0 or an MPI error code,
 * whose text err_text gives. */
#define XD_MPI_PLUGIN_ABI 2
typedef struct {
    int abi;
    /* *serialized: 1 when MPI may be called from any thread, one call at a time
     * (MPI_THREAD_SERIALIZED or more was granted) */
    int (*init)(int *rank, int *size, int *serialized);
    int (*finalize)(void);
    void (*abort)(int code);
    int (*barrier)(void);
    int (*bcast)(void *buf, size_t bytes, int root);
    int (*allgather)(const void *send, void *recv, size_t bytes);
    int (*alltoallv)(const void *send, const int *scount, const int *sdispl, void *recv,
                     const int *rcount, const int *rdispl);
    int (*allgatherv)(const void *send, int scount, void *recv, const int *rcount,
                      const int *rdispl);
    int (*gatherv)(const void *send, int scount, void *recv, const int *rcount,
                   const int *rdispl, int root);
    void (*err_text)(int code, char *buf, size_t cap);
    const char *(*version)(void);
} xd_mpi_ops;
/* The plugin's one exported function. */
const xd_mpi_ops *xd_mpi_plugin(void);

#endif
