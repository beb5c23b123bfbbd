/* The process-wide orphanage (orphanage.c): children whose environment went away first. */
#ifndef PROCSOCK_ORPHANAGE_H
#define PROCSOCK_ORPHANAGE_H
#include <sys/types.h>

/*
 * Hands a child over to the orphanage: with ORPHAN_STOP, TERM now and KILL after
 * `grace_ms` (to its group with ORPHAN_GROUP); reaped there when it exits; then
 * `free_memory(memory)` (NULL: nothing to free). Takes `pidfd` (or -1).
 */
#define ORPHAN_GROUP 1
#define ORPHAN_STOP 2
void orphan_adopt(pid_t pid, int pidfd, int flags, unsigned grace_ms, void *memory,
                  void (*free_memory)(void *));
#endif
