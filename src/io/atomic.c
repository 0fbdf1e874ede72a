/* Atomic file and directory writes; see atomic.h for the protocol and its
 * crash semantics. */
#include "atomic.h"

#include <dirent.h>
#include <stdio.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "../core/error.h"

/* ---- fault injection (tests) --------------------------------------------- */

static int fault_left, fault_errno, fault_ops;

int xd_atomic_inject_fault(int n, int err) {
    int ops = fault_ops;
    fault_left = n > 0 ? n : 0;
    fault_errno = err;
    fault_ops = 0;
    return ops;
}

/* Counts one operation; returns 1 (with errno set) when it is to fail. */
static int fault(void) {
    fault_ops++;
    if (fault_left > 0 && --fault_left == 0) {
        errno = fault_errno;
        return 1;
    }
    return 0;
}

/* ---- helpers -------------------------------------------------------------- */

/* A hint for the errors a user can fix. */
static const char *hint(int e) {
    switch (e) {
    case ENOENT: return " (does the parent directory exist?)";
    case EACCES:
    case EPERM: return " (no permission to write there)";
    case ENOSPC: return " (the disk is full)";
    case EDQUOT: return " (disk quota exceeded)";
    case EROFS: return " (read-only file system)";
    default: return "";
    }
}

/* The directory part of path ("." for a bare name). */
static void parent_of(const char *path, char *out, size_t cap) {
    const char *slash = strrchr(path, '/');
    if (!slash) snprintf(out, cap, ".");
    else if (slash == path) snprintf(out, cap, "/");
    else snprintf(out, cap, "%.*s", (int)(slash - path), path);
}

static int with_suffix(char *out, const char *path, const char *what) {
    int n = snprintf(out, XD_APATH_MAX, "%s.%s.%ld", path, what, (long)getpid());
    if (n < 0 || n >= XD_APATH_MAX) return xd_err("%s: path too long", path);
    return 0;
}

int xd_fsync_dir(const char *dir) {
    if (fault()) return xd_err("%s: cannot fsync directory: %s", dir, strerror(errno));
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return xd_err("%s: cannot open directory to fsync it: %s", dir, strerror(errno));
    int rc = fsync(fd), e = errno;
    close(fd);
    /* some file systems cannot fsync a directory; their renames are then as
     * durable as they get */
    if (rc && e != EINVAL && e != ENOTSUP)
        return xd_err("%s: cannot fsync directory: %s", dir, strerror(e));
    return 0;
}

/* rm -rf of name inside the directory dfd (AT_FDCWD: relative to the
 * working directory); returns 0 or an errno value. Symbolic links are
 * removed, never followed. */
static int rmtree_at(int dfd, const char *name) {
    struct stat st;
    if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW)) return errno == ENOENT ? 0 : errno;
    if (!S_ISDIR(st.st_mode)) return unlinkat(dfd, name, 0) && errno != ENOENT ? errno : 0;
    int fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return errno;
    DIR *dp = fdopendir(fd);
    if (!dp) {
        int e = errno;
        close(fd);
        return e;
    }
    int err = 0;
    struct dirent *de;
    while ((de = readdir(dp))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
        int e = rmtree_at(dirfd(dp), de->d_name);
        if (e && !err) err = e;
    }
    closedir(dp);
    if (unlinkat(dfd, name, AT_REMOVEDIR) && errno != ENOENT && !err) err = errno;
    return err;
}

int xd_mkdir_p(const char *dir) {
    char buf[XD_APATH_MAX];
    if (snprintf(buf, sizeof buf, "%s", dir) >= (int)sizeof buf)
        return xd_err("%s: path too long", dir);
    for (char *p = buf + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            if (mkdir(buf, 0755) && errno != EEXIST)
                return xd_err("%s: cannot create: %s", buf, strerror(errno));
            *p = '/';
        }
    if (mkdir(buf, 0755) && errno != EEXIST) return xd_err("%s: cannot create: %s", buf, strerror(errno));
    return 0;
}

int xd_rmtree(const char *path) {
    int e = rmtree_at(AT_FDCWD, path);
    return e ? xd_err("%s: cannot remove: %s", path, strerror(e)) : 0;
}

/* ---- one file --------------------------------------------------------------- */

int xd_afile_open(xd_afile *a, const char *path) {
    memset(a, 0, sizeof *a);
    if (!path || !*path) return xd_err("atomic write: empty file name");
    if (snprintf(a->path, sizeof a->path, "%s", path) >= (int)sizeof a->path || with_suffix(a->tmp, path, "tmp"))
        return xd_err("%s: path too long", path);
    if (unlink(a->tmp) && errno != ENOENT) /* stale, from a crashed process with our pid */
        return xd_err("%s: cannot remove stale temporary file %s: %s", path, a->tmp, strerror(errno));
    int fd = fault() ? -1 : open(a->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) {
        int e = errno;
        return xd_err("%s: cannot create temporary file %s: %s%s", path, a->tmp, strerror(e), hint(e));
    }
    a->f = fdopen(fd, "wb");
    if (!a->f) {
        int e = errno;
        close(fd);
        unlink(a->tmp);
        return xd_err("%s: cannot open %s: %s", path, a->tmp, strerror(e));
    }
    setvbuf(a->f, NULL, _IOFBF, 1 << 20);
    return 0;
}

void xd_afile_abort(xd_afile *a) {
    if (a->f) {
        fclose(a->f);
        a->f = NULL;
    }
    if (a->tmp[0]) unlink(a->tmp);
    a->tmp[0] = 0;
}

/* Reports a failed step (errno e), removes the temporary file, returns -1. */
static int afile_fail(xd_afile *a, const char *what, int e) {
    char tmp[XD_APATH_MAX];
    snprintf(tmp, sizeof tmp, "%s", a->tmp);
    xd_afile_abort(a);
    a->failed = 1;
    return xd_err("%s: %s %s: %s%s", a->path, what, tmp, strerror(e), hint(e));
}

int xd_afile_write(xd_afile *a, const void *data, size_t n) {
    if (!a->f) return xd_err("%s: write to a file that is not open", a->path);
    if (!n) return 0;
    errno = 0;
    if (fault() || fwrite(data, 1, n, a->f) != n) return afile_fail(a, "cannot write", errno ? errno : EIO);
    return 0;
}

int xd_afile_commit(xd_afile *a) {
    if (!a->f) return xd_err("%s: commit of a file that is not open", a->path);
    errno = 0;
    if (fault() || fflush(a->f) || ferror(a->f)) return afile_fail(a, "cannot write", errno ? errno : EIO);
    if (fault() || fsync(fileno(a->f))) return afile_fail(a, "cannot fsync", errno);
    int rc = fclose(a->f);
    a->f = NULL;
    if (rc) return afile_fail(a, "cannot close", errno);
    if (fault() || rename(a->tmp, a->path)) {
        int e = errno;
        char tmp[XD_APATH_MAX];
        snprintf(tmp, sizeof tmp, "%s", a->tmp);
        xd_afile_abort(a);
        return xd_err("%s: cannot rename %s onto it: %s%s", a->path, tmp, strerror(e), hint(e));
    }
    a->tmp[0] = 0;
    char dir[XD_APATH_MAX];
    parent_of(a->path, dir, sizeof dir);
    if (xd_fsync_dir(dir))
        return xd_err_prefix("%s: written, but its directory could not be synced", a->path);
    return 0;
}

int xd_write_file_atomic(const char *path, const void *data, size_t n) {
    xd_afile a;
    if (xd_afile_open(&a, path)) return -1;
    if (xd_afile_write(&a, data, n)) return -1;
    return xd_afile_commit(&a);
}

/* ---- a directory ---------------------------------------------------------- */

int xd_adir_begin(xd_adir *d, const char *dir) {
    memset(d, 0, sizeof *d);
    if (!dir || !*dir) return xd_err("atomic directory write: empty directory name");
    size_t n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/') n--;
    if (n >= sizeof d->dir) return xd_err("%s: path too long", dir);
    memcpy(d->dir, dir, n);
    d->dir[n] = 0;
    if (!strcmp(d->dir, "/") || !strcmp(d->dir, ".") || !strcmp(d->dir, ".."))
        return xd_err("%s: cannot replace this directory (name a new or existing subdirectory)", dir);
    if (with_suffix(d->tmp, d->dir, "tmp") || with_suffix(d->old, d->dir, "old")) return -1;
    struct stat st;
    if (lstat(d->dir, &st) == 0 && !S_ISDIR(st.st_mode))
        return xd_err("%s: exists and is not a directory (refusing to replace it)", d->dir);
    int e = rmtree_at(AT_FDCWD, d->tmp); /* stale, from a crashed process with our pid */
    if (e) return xd_err("%s: cannot remove stale %s: %s", d->dir, d->tmp, strerror(e));
    if (fault() || mkdir(d->tmp, 0755)) {
        e = errno;
        return xd_err("%s: cannot create temporary directory %s: %s%s", d->dir, d->tmp, strerror(e),
                      hint(e));
    }
    d->active = 1;
    return 0;
}

void xd_adir_abort(xd_adir *d) {
    if (d->active) rmtree_at(AT_FDCWD, d->tmp);
    d->active = 0;
}

/* Removes the temporary tree after a failure; the error text is kept. */
static int adir_fail(xd_adir *d) {
    xd_adir_abort(d);
    return -1;
}

int xd_adir_commit(xd_adir *d) {
    if (!d->active) return xd_err("%s: commit without a begun directory", d->dir);
    char parent[XD_APATH_MAX];
    parent_of(d->dir, parent, sizeof parent);
    if (xd_fsync_dir(d->tmp)) return adir_fail(d);
    struct stat st;
    if (lstat(d->dir, &st)) {
        int e = errno;
        if (e != ENOENT) {
            xd_err("%s: cannot examine: %s%s", d->dir, strerror(e), hint(e));
            return adir_fail(d);
        }
        if (fault() || rename(d->tmp, d->dir)) {
            e = errno;
            xd_err("%s: cannot rename %s to it: %s%s", d->dir, d->tmp, strerror(e), hint(e));
            return adir_fail(d);
        }
    } else {
        if (!S_ISDIR(st.st_mode)) {
            xd_err("%s: exists and is not a directory (refusing to replace it)", d->dir);
            return adir_fail(d);
        }
        if (!fault() && !renameat2(AT_FDCWD, d->tmp, AT_FDCWD, d->dir, RENAME_EXCHANGE)) {
            /* DIR is the new tree now; the old one is at tmp */
            if (rename(d->tmp, d->old)) snprintf(d->old, sizeof d->old, "%s", d->tmp);
        } else {
            int e = errno;
            if (e != EINVAL && e != ENOTSUP && e != ENOSYS && e != EOPNOTSUPP) {
                xd_err("%s: cannot exchange it with %s: %s%s", d->dir, d->tmp, strerror(e), hint(e));
                return adir_fail(d);
            }
            /* no RENAME_EXCHANGE here: two renames, DIR briefly absent */
            if ((e = rmtree_at(AT_FDCWD, d->old))) {
                xd_err("%s: cannot remove stale %s: %s", d->dir, d->old, strerror(e));
                return adir_fail(d);
            }
            if (fault() || rename(d->dir, d->old)) {
                e = errno;
                xd_err("%s: cannot move it aside to %s: %s%s", d->dir, d->old, strerror(e), hint(e));
                return adir_fail(d);
            }
            if (fault() || rename(d->tmp, d->dir)) {
                e = errno;
                rename(d->old, d->dir); /* put the previous version back */
                xd_err("%s: cannot rename %s to it: %s%s", d->dir, d->tmp, strerror(e), hint(e));
                return adir_fail(d);
            }
        }
    }
    d->active = 0;
    int rc = xd_fsync_dir(parent);
    if (rc) xd_err_prefix("%s: replaced, but the change may not be durable yet", d->dir);
    rmtree_at(AT_FDCWD, d->old); /* best effort: a leftover .old is harmless */
    return rc;
}

/* "<base>.<what>.<digits>" -> pid, else -1. */
static long leftover_pid(const char *name, const char *base, const char *what) {
    size_t nb = strlen(base), nw = strlen(what);
    if (strncmp(name, base, nb) || name[nb] != '.' || strncmp(name + nb + 1, what, nw) ||
        name[nb + 1 + nw] != '.')
        return -1;
    const char *p = name + nb + nw + 2;
    if (!*p) return -1;
    long pid = 0;
    for (; *p; p++) {
        if (*p < '0' || *p > '9' || pid > 1L << 30) return -1;
        pid = pid * 10 + (*p - '0');
    }
    return pid;
}

static int pid_alive(long pid) {
    if (pid <= 0) return 0;
    if (pid == (long)getpid()) return 1;
    return kill((pid_t)pid, 0) == 0 || errno == EPERM;
}

int xd_adir_recover(const char *dir) {
    xd_adir d;
    memset(&d, 0, sizeof d);
    size_t n = dir ? strlen(dir) : 0;
    while (n > 1 && dir[n - 1] == '/') n--;
    if (!n || n >= sizeof d.dir) return xd_err("%s: bad directory name", dir ? dir : "(null)");
    memcpy(d.dir, dir, n);
    char parent[XD_APATH_MAX];
    parent_of(d.dir, parent, sizeof parent);
    const char *base = strrchr(d.dir, '/') ? strrchr(d.dir, '/') + 1 : d.dir;
    int count = 0;
    struct stat st;
    int missing = lstat(d.dir, &st) != 0 && errno == ENOENT;
    for (int pass = 0; pass < 2; pass++) { /* 0: restore a .old, 1: delete leftovers */
        DIR *dp = opendir(parent);
        if (!dp) return xd_err("%s: cannot list: %s", parent, strerror(errno));
        struct dirent *de;
        while ((de = readdir(dp))) {
            long pid_old = leftover_pid(de->d_name, base, "old");
            long pid_tmp = leftover_pid(de->d_name, base, "tmp");
            long pid = pid_old >= 0 ? pid_old : pid_tmp;
            if (pid < 0 || pid_alive(pid)) continue;
            char path[XD_APATH_MAX];
            if (snprintf(path, sizeof path, "%s/%s", parent, de->d_name) >= (int)sizeof path) continue;
            if (pass == 0 && missing && pid_old >= 0) {
                if (rename(path, d.dir) == 0) {
                    missing = 0;
                    count++;
                }
            } else if (pass == 1) {
                if (rmtree_at(AT_FDCWD, path) == 0) count++;
            }
        }
        closedir(dp);
    }
    return count;
}
