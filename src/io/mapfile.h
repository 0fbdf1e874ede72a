/* Read-only memory maps of whole files, the one file-mapping helper: every
 * binary format xdistill reads in place (GGUF, safetensors, token data,
 * teacher logits) maps its files through it. */
#ifndef XD_MAPFILE_H
#define XD_MAPFILE_H

#include <stddef.h>
#include <stdint.h>

/* Maps the regular file `path` read-only (MAP_PRIVATE) into *map, its *size
 * bytes. min_bytes >= 1: a file shorter than that is refused with "PATH:
 * header: the file has N bytes, too small for the MIN-byte header
 * (truncated, or not a WHAT)". Other errors: "PATH: cannot open: REASON",
 * "PATH: not a regular file", "PATH: mmap failed: REASON". Returns 0, or -1
 * (*map NULL, *size 0) with xd_last_error() naming the file. The descriptor
 * is closed before returning; release the map with munmap(*map, *size). */
int xd_map_file(const char *path, size_t min_bytes, const char *what, uint8_t **map,
                size_t *size);

#endif
