/*
 * The floor for spawning from a program: posix_spawn + waitpid in a loop, keeping
 * CONCURRENCY children in flight, COUNT in all. Prints spawns per second.
 *   spawn-loop COUNT CONCURRENCY PROGRAM
 */
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>

extern char **environ;

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: spawn-loop COUNT CONCURRENCY PROGRAM\n");
    return 2;
  }
  long count = atol(argv[1]), concurrency = atol(argv[2]), started = 0, done = 0;
  char *child_argv[] = {argv[3], NULL};
  double start = now();
  while (done < count) {
    while (started < count && started - done < concurrency) {
      pid_t pid;
      if (posix_spawn(&pid, argv[3], NULL, NULL, child_argv, environ) != 0) {
        perror("posix_spawn");
        return 1;
      }
      started++;
    }
    int status;
    if (waitpid(-1, &status, 0) < 0) {
      perror("waitpid");
      return 1;
    }
    done++;
  }
  printf("%.1f\n", count / (now() - start));
  return 0;
}
