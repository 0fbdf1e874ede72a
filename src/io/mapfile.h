/* Read-only memory maps of whole files, for the binary formats xdistill
 * reads in place (token data, teacher logits). */
#ifndef XD_MAPFILE_H
#define XD_MAPFILE_H

#include <stddef.h>
#include <stdint.h>

/* Maps the regular file `path` read-only into *map (its *size bytes). A file
 * shorter than min_bytes is refused with "PATH: header: the file has N
 * bytes, fewer than the MIN-byte header (truncated, or not a WHAT)". Returns
 * 0, or -1 with xd_last_error() naming the file. Release with munmap. */
int xd_map_file(const char *path, size_t min_bytes, const char *what, uint8_t **map,
                size_t *size);

#endif
