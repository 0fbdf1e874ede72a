/* Atomic writes of files and of whole directories (models, checkpoints).
 *
 * One file (xd_afile_*): the bytes go to PATH.tmp.<pid> (created exclusively,
 * mode 0644 less the umask), which is flushed, fsync'ed, closed and renamed
 * onto PATH; then PATH's directory is fsync'ed so the rename itself is
 * durable. rename(2) replaces PATH in one step, so a reader (or a reboot)
 * sees either the previous PATH or the complete new one, never a mix.
 *
 * A directory (xd_adir_*): every file is written into DIR.tmp.<pid>/, which is
 * fsync'ed and then put in DIR's place:
 *   - DIR absent: rename(DIR.tmp.<pid>, DIR);
 *   - DIR present: renameat2(RENAME_EXCHANGE) swaps the two names in one
 *     step, then the old tree (now at DIR.tmp.<pid>) is renamed to
 *     DIR.old.<pid> and deleted. Where the file system cannot exchange
 *     (EINVAL, ENOTSUP), DIR is first renamed to DIR.old.<pid>, then
 *     DIR.tmp.<pid> to DIR, then DIR.old.<pid> is deleted;
 *   - finally DIR's parent is fsync'ed.
 *
 * Crash semantics (power loss or kill at any instant):
 *   - DIR, when it exists, is always a complete directory: the old one or the
 *     new one. No partial checkpoint is ever visible under DIR.
 *   - Until the commit's rename, DIR is the old version; after the parent's
 *     fsync it is the new one.
 *   - Leftovers are only ever named DIR.tmp.<pid> or DIR.old.<pid> (and
 *     FILE.tmp.<pid> for single files); they are never read and may be
 *     deleted. xd_adir_recover() does that for dead pids.
 *   - Only with the fallback (no RENAME_EXCHANGE), a crash between its two
 *     renames leaves DIR absent, the old version complete at DIR.old.<pid>
 *     and the new one complete at DIR.tmp.<pid>; xd_adir_recover() puts the
 *     old version back.
 *
 * Errors name the path (and the temporary path) and the system's reason
 * (ENOSPC, EACCES, a missing parent directory, ...). On any failure the
 * temporary file or directory is removed and the previous PATH / DIR is left
 * untouched. Not thread-safe for the same PATH / DIR from two threads of one
 * process (the temporary names carry only the pid). */
#ifndef XD_ATOMIC_H
#define XD_ATOMIC_H

#include <stdio.h>
#include <stddef.h>

#define XD_APATH_MAX 4096

typedef struct {
    FILE *f;
    char path[XD_APATH_MAX]; /* final name */
    char tmp[XD_APATH_MAX];  /* PATH.tmp.<pid> */
    int failed;              /* a write failed (errors already reported) */
} xd_afile;

/* Creates PATH.tmp.<pid> for writing (a stale one of that name is replaced). */
int xd_afile_open(xd_afile *a, const char *path);
/* Appends n bytes; on failure the file is aborted and -1 returned. */
int xd_afile_write(xd_afile *a, const void *data, size_t n);
/* flush + fsync + close + rename onto PATH + fsync of PATH's directory. On
 * failure the temporary file is removed and PATH is untouched. */
int xd_afile_commit(xd_afile *a);
/* Closes and removes the temporary file (safe to call twice). */
void xd_afile_abort(xd_afile *a);

/* Writes data to path atomically (open + write + commit). */
int xd_write_file_atomic(const char *path, const void *data, size_t n);

typedef struct {
    char dir[XD_APATH_MAX]; /* final name (trailing slashes removed) */
    char tmp[XD_APATH_MAX]; /* DIR.tmp.<pid>: write the contents here */
    char old[XD_APATH_MAX]; /* DIR.old.<pid>: the previous DIR while it is deleted */
    int active;
} xd_adir;

/* Creates the empty directory DIR.tmp.<pid> (d->tmp), removing a stale one. */
int xd_adir_begin(xd_adir *d, const char *dir);
/* Puts d->tmp in DIR's place as described above. On failure before the
 * switch, d->tmp is removed and DIR is untouched. After the switch the
 * save has succeeded; failing to delete the old tree is then not an error
 * (it stays as DIR.old.<pid>). */
int xd_adir_commit(xd_adir *d);
/* Removes d->tmp and everything in it. */
void xd_adir_abort(xd_adir *d);

/* Tidies what a crashed save of DIR left behind: if DIR is missing and a
 * DIR.old.<pid> of a dead process exists, it is renamed back to DIR; then
 * DIR.tmp.<pid> and DIR.old.<pid> of dead processes are deleted. Returns the
 * number of entries restored or deleted, or -1. */
int xd_adir_recover(const char *dir);

/* fsync of a directory (makes renames and creations in it durable). */
int xd_fsync_dir(const char *dir);
/* mkdir -p dir (mode 0755); an existing directory is not an error. */
int xd_mkdir_p(const char *dir);
/* rm -rf path (does not follow symbolic links). Missing path is not an error. */
int xd_rmtree(const char *path);

/* Fault injection, for tests only: the n-th next file-system operation of
 * this module (create, write, fsync, rename, mkdir; n >= 1) fails with
 * errno err, as if the system had returned it. n = 0 disables. Returns the
 * number of operations counted since the last call (so a test can learn how
 * many there are). Not thread-safe. */
int xd_atomic_inject_fault(int n, int err);

#endif
