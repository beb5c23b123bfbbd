/*
 * procsock_reaper: the process procsock puts between itself and a program when the run is
 * contained (LocalChannel `contain`), so that nothing the program starts outlives the run,
 * whatever process group or session it moves to.
 *
 *   procsock_reaper [-c CGROUP_DIR] [-u UID -g GID] PARENT_PID EXIT_GRACE_MS KILL_TIMEOUT_MS GROUP FILE ARGV0 [ARG...]
 *
 * With -c, CGROUP_DIR is a writable (delegated) cgroup v2 directory: the run gets a leaf
 * cgroup of its own there, CGROUP_DIR/run-<reaper's pid>, which the program joins before its
 * exec (the reaper itself stays where it is, so that stopping the cgroup never stops it).
 * Then stopping the run also signals every member of that cgroup, and its KILL is the
 * cgroup's (cgroup.kill, Linux >= 5.14: atomic, so a program forking in a loop cannot outrun
 * it); CPU time is the cgroup's cpu.stat; the leaf is removed once the tree is reaped. The
 * walk of the tree below stays, for a process that moved itself out of the cgroup. A leaf
 * that cannot be made or joined fails the run (`cgerr=<errno>` in the report).
 *
 * With -u and -g, the program runs as that user and group (supplementary groups dropped),
 * set in the program's process after it joined its cgroup, while the reaper keeps its own
 * identity: a daemon running programs as another user makes the leaves as itself (the
 * delegated directory is its), which that user could not.
 *
 * GROUP is 1 when the program is to lead a process group of its own (`kill-group`), else 0.
 * When the reaper's stdin is a terminal (PTY mode: it was started as that terminal's session
 * leader), the program leads a group of its own either way, made the terminal's foreground
 * group, so that what is typed (^C) and SIGWINCH reach it and not the reaper.
 *
 * It is a child subreaper (PR_SET_CHILD_SUBREAPER): every descendant whose parent dies is
 * re-parented to it rather than to init, so the run's whole tree stays below it and is
 * known by parentage alone. It starts FILE (looked up in PATH, as execvp does) with the
 * given argv on its own stdin, stdout and stderr, then lets go of them (they become
 * /dev/null), so the pipes close when the last program holding them does; it reaps every
 * process of the tree, and ends the run:
 * - when the program exits: what it left running gets EXIT_GRACE_MS to end by itself, then
 *   TERM, then KILL after KILL_TIMEOUT_MS;
 * - when procsock stops the run (TERM to the reaper): TERM to the whole tree, KILL after
 *   KILL_TIMEOUT_MS; signal 41 (SIG_STOP_REST) does the same but for the program, which
 *   procsock TERMed itself; signal 40 (SIG_KILL_TREE) KILLs the tree at once (real-time
 *   signals that nobody forwards);
 * - when the process that started it dies (PR_SET_PDEATHSIG: a TERM to the reaper), the
 *   same. PARENT_PID 0 (a detached run) sets no such signal.
 * Any other signal sent to the reaper (INT, HUP, USR1, WINCH…) is passed on to the program.
 * On descriptor 3 it writes `pid=<program's pid>` as soon as the program is forked (the
 * program writes it, before its exec, so nothing it prints can come before); once the
 * tree is empty, it writes one more line and exits as the program did (the same code, or the
 * same signal):
 *
 *   status=<wait status> utime=<µs> stime=<µs> maxrss=<KiB> stopped=<n> execerr=<errno>
 *   killed=<0|1> [cgerr=<errno>] [mempeak=<bytes>]
 *
 * usage of the program and every descendant it reaped (RUSAGE_CHILDREN; with a cgroup, the
 * CPU times are its cpu.stat and mempeak its memory.peak, when the memory controller is
 * enabled there), how many processes other than the program had to be signalled, the errno
 * of a failed exec (0 if none), whether the tree was sent KILL (procsock logs the KILL the
 * reaper sent on its own clock from this) and, with -c, of a cgroup that could not be made or
 * joined.
 *
 * The tree is found by reading the parent of every process in /proc (the children files of
 * /proc/PID/task/TID need CONFIG_PROC_CHILDREN, which not every kernel has); that happens only
 * when something has to be signalled, never as a poll. A pid read there could in principle
 * be reaped and reused before the kill lands: that needs the whole pid space to wrap in
 * between, and is the limit of signalling by pid.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <limits.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <termios.h>
#include <unistd.h>

#define REPORT_FD 3
#define SIG_KILL_TREE 40
/* "Stop the run; the program (and its group with GROUP) has had its TERM from procsock already." */
#define SIG_STOP_REST 41
#define MAX_TRACKED 4096

static pid_t self;
static pid_t program = -1;
static int own_group = 0;
/* Its stdin is a terminal (PTY mode): the program gets its own group and the foreground. */
static int terminal = 0;
/* Whether the tree was sent KILL (by the kill timeout, or asked to), for the report. */
static int killed;

/* Distinct processes (other than the program) signalled so far, for the report. */
static pid_t signalled[MAX_TRACKED];
static int signalled_count = 0;
static int signalled_overflow = 0;
/* With -c: the run's leaf cgroup (a directory descriptor), its name in its parent's. */
static int cgroup_parent = -1;
static int cgroup_leaf = -1;
static int cgroup_procs = -1;
static char cgroup_name[32];
/* Members of the leaf as last read (the tree walk skips them: signalled once per round). */
static pid_t *members = NULL;
static int member_count = 0;

static long long now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void note_signalled(pid_t pid) {
  int i;
  if (pid == program) return;
  for (i = 0; i < signalled_count; i++) {
    if (signalled[i] == pid) return;
  }
  if (signalled_count < MAX_TRACKED) signalled[signalled_count++] = pid;
  else signalled_overflow++;
}

typedef struct {
  pid_t pid, ppid, pgid;
  int zombie;
} proc_entry;

/* Every process's parent, from /proc/PID/stat; NULL (count 0) when /proc cannot be read. */
static proc_entry *read_parents(int *count) {
  DIR *dir = opendir("/proc");
  proc_entry *list = NULL;
  int n = 0, capacity = 0;
  struct dirent *entry;
  *count = 0;
  if (!dir) return NULL;
  while ((entry = readdir(dir)) != NULL) {
    char path[64], buffer[512];
    char *close_paren;
    int fd;
    ssize_t length;
    pid_t pid = (pid_t)strtol(entry->d_name, NULL, 10);
    if (pid <= 0) continue;
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) continue;
    length = read(fd, buffer, sizeof buffer - 1);
    close(fd);
    if (length <= 0) continue;
    buffer[length] = '\0';
    /* "pid (comm) state ppid ...": comm may hold spaces and parentheses. */
    close_paren = strrchr(buffer, ')');
    if (!close_paren || close_paren[1] == '\0' || close_paren[2] == '\0') continue;
    if (n == capacity) {
      proc_entry *grown;
      capacity = capacity ? capacity * 2 : 256;
      grown = realloc(list, (size_t)capacity * sizeof *list);
      if (!grown) break;
      list = grown;
    }
    list[n].pid = pid;
    list[n].zombie = close_paren[2] == 'Z';
    {
      char *end;
      list[n].ppid = (pid_t)strtol(close_paren + 4, &end, 10);
      list[n].pgid = (pid_t)strtol(end, NULL, 10);
    }
    n++;
  }
  closedir(dir);
  *count = n;
  return list;
}

/* Reads a whole small file below the leaf; returns its length (NUL-terminated) or -1. */
static ssize_t read_leaf_file(const char *name, char *buffer, size_t size) {
  int fd = openat(cgroup_leaf, name, O_RDONLY | O_CLOEXEC);
  ssize_t total = 0, n;
  if (fd < 0) return -1;
  while ((size_t)total < size - 1) {
    n = read(fd, buffer + total, size - 1 - (size_t)total);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    total += n;
  }
  close(fd);
  buffer[total] = '\0';
  return total;
}

/* The members now of the cgroup directory `dir` (its cgroup.procs), into `members`. */
static void read_members_at(int dir) {
  int fd, capacity = 0, full = 0;
  char buffer[4096], digits[16];
  int digit_count = 0;
  ssize_t n, i;
  member_count = 0;
  if (dir < 0) return;
  fd = openat(dir, "cgroup.procs", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  while (!full) {
    n = read(fd, buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    for (i = 0; i < n; i++) {
      if (buffer[i] >= '0' && buffer[i] <= '9') {
        if (digit_count < (int)sizeof digits - 1) digits[digit_count++] = buffer[i];
        continue;
      }
      if (digit_count == 0) continue;
      digits[digit_count] = '\0';
      digit_count = 0;
      if (member_count == capacity) {
        /* The new size is kept only once the memory is had; without it, reading stops here. */
        int grown_capacity = capacity ? capacity * 2 : 64;
        pid_t *grown = realloc(members, (size_t)grown_capacity * sizeof *members);
        if (!grown) {
          full = 1;
          break;
        }
        members = grown;
        capacity = grown_capacity;
      }
      members[member_count++] = (pid_t)strtol(digits, NULL, 10);
    }
  }
  close(fd);
}

/* The leaf's members now (cgroup.procs), into `members`. */
static void read_members(void) {
  member_count = 0;
  if (cgroup_leaf >= 0) read_members_at(cgroup_leaf);
}

static int is_member(pid_t pid) {
  int i;
  for (i = 0; i < member_count; i++) {
    if (members[i] == pid) return 1;
  }
  return 0;
}

/* The tree is signalled through the cgroup first: KILL is cgroup.kill where the kernel has it. */
static void signal_cgroup(int sig, pid_t skip) {
  int i, fd;
  read_members();
  if (sig == SIGKILL && (fd = openat(cgroup_leaf, "cgroup.kill", O_WRONLY | O_CLOEXEC)) >= 0) {
    ssize_t n = write(fd, "1", 1);
    close(fd);
    if (n == 1) {
      for (i = 0; i < member_count; i++) note_signalled(members[i]);
      return;
    }
  }
  for (i = 0; i < member_count; i++) {
    pid_t pid = members[i];
    /* Signalled already by procsock, with its whole group (see LocalChannel.kill). */
    if (skip > 0 && (pid == skip || (own_group && getpgid(pid) == skip))) {
      note_signalled(pid);
      continue;
    }
    if (kill(pid, sig) == 0) note_signalled(pid);
  }
}

static int remove_cgroup_tree(int parent, const char *name, int depth);
static void remove_subtree(int parent, const char *name, int depth);
static void kill_members_in(int parent, const char *name, int depth);

/* Makes the leaf: CGROUP_DIR/run-<pid>, or (a stale one of a pid that was ours) again. */
static int make_cgroup(const char *parent) {
  int attempt, error;
  cgroup_parent = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (cgroup_parent < 0) return errno;
  snprintf(cgroup_name, sizeof cgroup_name, "run-%d", (int)self);
  for (attempt = 0;; attempt++) {
    if (mkdirat(cgroup_parent, cgroup_name, 0755) == 0) break;
    /* A leaf left by an earlier reaper of this pid that was killed: empty, it goes. */
    if (errno != EEXIST || attempt > 0) return errno;
    /* With the cgroups its program made inside it, if any (remove_cgroup's order). */
    if ((error = remove_cgroup_tree(cgroup_parent, cgroup_name, 0)) != 0) return error;
  }
  cgroup_leaf = openat(cgroup_parent, cgroup_name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (cgroup_leaf >= 0) cgroup_procs = openat(cgroup_leaf, "cgroup.procs", O_WRONLY | O_CLOEXEC);
  if (cgroup_leaf < 0 || cgroup_procs < 0) {
    error = errno;
    unlinkat(cgroup_parent, cgroup_name, AT_REMOVEDIR);
    return error;
  }
  return 0;
}

/*
 * Waits (up to `ms`) until the leaf has no member left, in it or in a cgroup below it:
 * cgroup.events says "populated 0". Returns 1 once it does, 0 at the timeout, -1 unreadable.
 */
static int wait_unpopulated(long ms) {
  long long deadline = now_ms() + ms;
  int fd = openat(cgroup_leaf, "cgroup.events", O_RDONLY | O_CLOEXEC), empty = 0;
  if (fd < 0) return -1;
  for (;;) {
    char buffer[256];
    struct pollfd watch = {fd, POLLPRI, 0};
    long long left;
    ssize_t n = pread(fd, buffer, sizeof buffer - 1, 0);
    if (n >= 0) {
      buffer[n] = '\0';
      if (strstr(buffer, "populated 0")) {
        empty = 1;
        break;
      }
    }
    left = deadline - now_ms();
    if (left <= 0) break;
    /* The kernel notifies a change of cgroup.events as POLLPRI (and inotify's IN_MODIFY). */
    poll(&watch, 1, (int)left);
  }
  close(fd);
  return empty;
}

/* Deeper than this, cgroups the program made below its leaf are left (and so is the leaf). */
#define MAX_CGROUP_DEPTH 32

/*
 * Calls `each(parent_fd, name, depth)` for every directory directly below the directory `dir`
 * (the cgroups a program made inside its leaf); `dir` itself stays open.
 */
static void for_each_subdir(int dir, int depth, void (*each)(int, const char *, int)) {
  int fd = openat(dir, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  DIR *listing;
  struct dirent *entry;
  if (fd < 0) return;
  listing = fdopendir(fd);
  if (!listing) {
    close(fd);
    return;
  }
  while ((entry = readdir(listing)) != NULL) {
    struct stat info;
    if (!strcmp(entry->d_name, ".") || !strcmp(entry->d_name, "..")) continue;
    if (entry->d_type != DT_DIR) {
      if (entry->d_type != DT_UNKNOWN) continue;
      if (fstatat(dirfd(listing), entry->d_name, &info, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISDIR(info.st_mode)) continue;
    }
    each(dirfd(listing), entry->d_name, depth + 1);
  }
  closedir(listing);
}

/* Removes the cgroup `name` below `parent` depth-first: the cgroups inside it, then it. */
static int remove_cgroup_tree(int parent, const char *name, int depth) {
  if (depth <= MAX_CGROUP_DEPTH) {
    int dir = openat(parent, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir >= 0) {
      for_each_subdir(dir, depth, remove_subtree);
      close(dir);
    }
  }
  return unlinkat(parent, name, AT_REMOVEDIR) == 0 ? 0 : errno;
}

static void remove_subtree(int parent, const char *name, int depth) {
  (void)remove_cgroup_tree(parent, name, depth);
}

/* Without cgroup.kill: KILLs every member of the cgroup `dir` and of the cgroups below it. */
static void kill_members_at(int dir, int depth) {
  int i;
  read_members_at(dir);
  for (i = 0; i < member_count; i++) {
    if (members[i] > 0 && members[i] != self) kill(members[i], SIGKILL);
  }
  if (depth < MAX_CGROUP_DEPTH) for_each_subdir(dir, depth, kill_members_in);
}

static void kill_members_in(int parent, const char *name, int depth) {
  int dir = openat(parent, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir < 0) return;
  kill_members_at(dir, depth);
  close(dir);
}

/*
 * Removes the leaf once its last member is gone; one that will not empty is KILLed first
 * (cgroup.kill; before Linux 5.14, member by member in rounds until it is empty or
 * `kill_timeout` has passed). Cgroups the program made inside the leaf go first.
 */
static void remove_cgroup(long kill_timeout) {
  long long deadline;
  int fd;
  if (cgroup_leaf < 0) return;
  if (unlinkat(cgroup_parent, cgroup_name, AT_REMOVEDIR) == 0 || errno != EBUSY) return;
  /* Busy: members left (not our descendants: the tree is reaped, yet the run's), or cgroups. */
  deadline = now_ms() + kill_timeout;
  fd = openat(cgroup_leaf, "cgroup.kill", O_WRONLY | O_CLOEXEC);
  if (fd >= 0) {
    ssize_t n = write(fd, "1", 1);
    close(fd);
    if (n != 1) fd = -1;
  }
  if (fd >= 0) {
    wait_unpopulated(kill_timeout);
  } else {
    for (;;) {
      long long left = deadline - now_ms();
      int empty;
      kill_members_at(cgroup_leaf, 0);
      empty = wait_unpopulated(left < 0 ? 0 : left > 100 ? 100 : left);
      if (empty != 0 || now_ms() >= deadline) break;
    }
  }
  for_each_subdir(cgroup_leaf, 0, remove_subtree);
  unlinkat(cgroup_parent, cgroup_name, AT_REMOVEDIR);
}

/* A field of the leaf's cpu.stat ("user_usec 123"), or -1. */
static long long cpu_stat_field(const char *text, const char *key) {
  size_t length = strlen(key);
  const char *at = text;
  while ((at = strstr(at, key)) != NULL) {
    if ((at == text || at[-1] == '\n') && at[length] == ' ') return strtoll(at + length + 1, NULL, 10);
    at += length;
  }
  return -1;
}

/*
 * Sends `sig` to every live descendant but `skip` — the program, and with GROUP its process
 * group's members — (0: none); returns how many were signalled.
 */
static int signal_tree(int sig, pid_t skip) {
  int count = 0, i, j, found = 0, head = 0;
  proc_entry *procs;
  pid_t *queue;
  pid_t *group;
  int *zombie;
  if (cgroup_leaf >= 0) signal_cgroup(sig, skip);
  procs = read_parents(&count);
  if (!procs) {
    /* No /proc: the program's process group is what can still be reached. */
    if (program > 0 && kill(-program, sig) == 0) return 1;
    return 0;
  }
  queue = malloc(((size_t)count + 1) * sizeof *queue);
  zombie = malloc(((size_t)count + 1) * sizeof *zombie);
  group = malloc(((size_t)count + 1) * sizeof *group);
  if (!queue || !zombie || !group) {
    free(queue);
    free(zombie);
    free(group);
    free(procs);
    return 0;
  }
  queue[found] = self;
  group[found] = 0;
  zombie[found++] = 0;
  while (head < found) {
    pid_t parent = queue[head++];
    for (j = 0; j < count && found <= count; j++) {
      if (procs[j].ppid != parent || procs[j].pid == self) continue;
      queue[found] = procs[j].pid;
      group[found] = procs[j].pgid;
      zombie[found++] = procs[j].zombie;
    }
  }
  /* A zombie is dead already (its parent in the tree reaps it): not signalled, not counted. */
  for (i = 1; i < found; i++) {
    if (zombie[i] || is_member(queue[i])) continue;
    /* Signalled already by procsock, with its whole group (see LocalChannel.kill). */
    if (skip > 0 && (queue[i] == skip || (own_group && group[i] == skip))) {
      note_signalled(queue[i]);
      continue;
    }
    if (kill(queue[i], sig) == 0) note_signalled(queue[i]);
  }
  free(queue);
  free(zombie);
  free(group);
  free(procs);
  return found - 1;
}

/* Reaps what has exited; returns 1 while children remain. */
static int reap(int *program_status, int *program_done) {
  for (;;) {
    int status = 0;
    pid_t pid = waitpid(-1, &status, WNOHANG);
    if (pid > 0) {
      if (pid == program) {
        *program_status = status;
        *program_done = 1;
      }
      continue;
    }
    if (pid == 0) return 1;
    if (errno == EINTR) continue;
    return 0; /* ECHILD */
  }
}

static void write_report(const char *line, int length) {
  while (length > 0) {
    ssize_t r = write(REPORT_FD, line, (size_t)length);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return;
    line += r;
    length -= (int)r;
  }
}

static void report_pid(pid_t pid) {
  char line[32];
  int length = snprintf(line, sizeof line, "pid=%d\n", (int)pid);
  if (length > 0) write_report(line, length);
}

static void report(int status, int exec_error, int cgroup_error) {
  struct rusage usage;
  char line[320];
  int length;
  long long utime, stime, peak = -1;
  memset(&usage, 0, sizeof usage);
  getrusage(RUSAGE_CHILDREN, &usage);
  utime = (long long)usage.ru_utime.tv_sec * 1000000 + usage.ru_utime.tv_usec;
  stime = (long long)usage.ru_stime.tv_sec * 1000000 + usage.ru_stime.tv_usec;
  if (cgroup_leaf >= 0) {
    char text[1024];
    if (read_leaf_file("cpu.stat", text, sizeof text) > 0) {
      long long user = cpu_stat_field(text, "user_usec"), system = cpu_stat_field(text, "system_usec");
      if (user >= 0 && system >= 0) {
        utime = user;
        stime = system;
      }
    }
    if (read_leaf_file("memory.peak", text, sizeof text) > 0) peak = strtoll(text, NULL, 10);
  }
  length = snprintf(line, sizeof line,
                    "status=%d utime=%lld stime=%lld maxrss=%ld stopped=%d execerr=%d killed=%d",
                    status, utime, stime, usage.ru_maxrss, signalled_count + signalled_overflow,
                    exec_error, killed);
  if (length > 0 && cgroup_error) {
    length += snprintf(line + length, sizeof line - (size_t)length, " cgerr=%d", cgroup_error);
  }
  if (length > 0 && peak >= 0) {
    length += snprintf(line + length, sizeof line - (size_t)length, " mempeak=%lld", peak);
  }
  if (length > 0 && length < (int)sizeof line - 1) {
    line[length++] = '\n';
    write_report(line, length);
  }
  close(REPORT_FD);
}

/* Ends as the program did: its exit code, or the signal that killed it (without a core). */
static void exit_like(int status) {
  if (WIFSIGNALED(status)) {
    int sig = WTERMSIG(status);
    struct rlimit no_core = {0, 0};
    sigset_t only;
    setrlimit(RLIMIT_CORE, &no_core);
    signal(sig, SIG_DFL);
    sigemptyset(&only);
    sigaddset(&only, sig);
    sigprocmask(SIG_UNBLOCK, &only, NULL);
    raise(sig);
    _exit(128 + sig);
  }
  _exit(WIFEXITED(status) ? WEXITSTATUS(status) : 125);
}

static int parse_ms(const char *text, long *out) {
  char *end;
  long value;
  errno = 0;
  value = strtol(text, &end, 10);
  if (errno || *end || value < 0) return -1;
  *out = value;
  return 0;
}

int main(int argc, char **argv) {
  long parent = 0, exit_grace = 0, kill_timeout = 0;
  sigset_t watched, old;
  int exec_pipe[2];
  /* What a failed child sends back: which step failed (exec or cgroup) and its errno. */
  int failure[2] = {0, 0};
  const char *cgroup_dir = NULL;
  int cgroup_error = 0;
  long uid = -1, gid = -1;
  int exec_error = 0, program_status = 0, program_done = 0, children = 1;
  /* Phases: running → (program exited) grace → (stopping) term → kill */
  enum { RUNNING, GRACE, TERM_SENT, KILLING } phase = RUNNING;
  long long deadline = -1;
  ssize_t n;
  int devnull;

  while (argc > 2 && argv[1][0] == '-' && argv[1][1] != '\0' && argv[1][2] == '\0') {
    char option = argv[1][1];
    if (option == 'c') cgroup_dir = argv[2];
    else if ((option != 'u' && option != 'g') || parse_ms(argv[2], option == 'u' ? &uid : &gid)) {
      argc = 0; /* the usage line below */
      break;
    }
    argv += 2;
    argc -= 2;
  }
  if ((uid < 0) != (gid < 0)) argc = 0;
  if (argc < 7 || parse_ms(argv[1], &parent) || parse_ms(argv[2], &exit_grace) ||
      parse_ms(argv[3], &kill_timeout) || (strcmp(argv[4], "0") && strcmp(argv[4], "1"))) {
    fprintf(stderr, "procsock_reaper: usage: procsock_reaper [-c CGROUP_DIR] [-u UID -g GID] PARENT_PID EXIT_GRACE_MS KILL_TIMEOUT_MS GROUP FILE ARGV0 [ARG...]\n");
    return 125;
  }
  own_group = argv[4][0] == '1';
  /* PTY mode (its stdin is the terminal procsock gave it): the program takes the foreground. */
  terminal = isatty(0);
  self = getpid();
  fcntl(REPORT_FD, F_SETFD, FD_CLOEXEC);
  prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);

  /* Signals are taken synchronously (sigtimedwait), never by a handler: all but the faults. */
  sigfillset(&watched);
  sigdelset(&watched, SIGSEGV);
  sigdelset(&watched, SIGBUS);
  sigdelset(&watched, SIGFPE);
  sigdelset(&watched, SIGILL);
  sigdelset(&watched, SIGTRAP);
  sigdelset(&watched, SIGSYS);
  sigprocmask(SIG_BLOCK, &watched, &old);
  /* The parent's death is a stop; if it died already (before this line), stop now. */
  if (parent != 0) {
#ifdef PROCSOCK_TEST_HOOKS
    /*
     * Tests only (test/channel/parent-race.test.ts): wait here for the end of a FIFO the test
     * holds, so that it can kill the parent before the parent-death signal is set.
     */
    const char *hold = getenv("PROCSOCK_TEST_HOLD_REAPER");
    if (hold) {
      char byte;
      int fd = open(hold, O_RDONLY | O_CLOEXEC);
      while (fd >= 0 && read(fd, &byte, 1) > 0) continue;
      if (fd >= 0) close(fd);
    }
#endif
    prctl(PR_SET_PDEATHSIG, SIGTERM, 0, 0, 0);
    if (getppid() != (pid_t)parent) return 125;
  } else {
    prctl(PR_SET_PDEATHSIG, 0, 0, 0, 0);
  }

  if (cgroup_dir && (cgroup_error = make_cgroup(cgroup_dir)) != 0) {
    report(127 << 8, 0, cgroup_error);
    return 127;
  }
  if (pipe2(exec_pipe, O_CLOEXEC) != 0) return 125;
  program = fork();
  if (program < 0) {
    exec_error = errno;
    report(127 << 8, exec_error, 0);
    remove_cgroup(kill_timeout);
    return 127;
  }
  if (program == 0) {
    /* The program's pid, from the program's side: in the pipe before it can print anything. */
    report_pid(getpid());
    /* Into the run's cgroup before anything of the program runs ("0": the writer itself). */
    if (cgroup_procs >= 0 && write(cgroup_procs, "0", 1) != 1) {
      failure[0] = 1;
      failure[1] = errno;
      n = write(exec_pipe[1], failure, sizeof failure);
      (void)n;
      _exit(127);
    }
    /* Then the program's identity (the reaper keeps its own); a failure is an exec failure. */
    if (uid >= 0 && (setgroups(0, NULL) != 0 || setgid((gid_t)gid) != 0 || setuid((uid_t)uid) != 0)) {
      failure[1] = errno;
      n = write(exec_pipe[1], failure, sizeof failure);
      (void)n;
      _exit(127);
    }
    if (own_group || terminal) setpgid(0, 0);
    /*
     * The program's group, not ours, is the terminal's foreground group: it gets what is typed
     * (^C, its reads) and SIGWINCH, once. SIGTTOU is still blocked here, so a call from what
     * is now a background group is allowed.
     */
    if (terminal) tcsetpgrp(0, getpid());
    sigprocmask(SIG_SETMASK, &old, NULL);
    prctl(PR_SET_PDEATHSIG, 0, 0, 0, 0);
    execvp(argv[5], argv + 6);
    failure[1] = errno;
    n = write(exec_pipe[1], failure, sizeof failure);
    (void)n;
    _exit(127);
  }
  if (cgroup_procs >= 0) close(cgroup_procs);
  if (own_group || terminal) setpgid(program, program); /* as the child does: whichever runs first */
  close(exec_pipe[1]);
  do n = read(exec_pipe[0], failure, sizeof failure);
  while (n < 0 && errno == EINTR);
  close(exec_pipe[0]);
  if (n == (ssize_t)sizeof failure) {
    if (failure[0] == 1) cgroup_error = failure[1];
    else exec_error = failure[1];
  }

  /* Let go of the program's pipes: they close when the last process of the tree holding one does. */
  devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
  if (devnull >= 0) {
    dup3(devnull, 0, 0);
    dup3(devnull, 1, 0);
    dup3(devnull, 2, 0);
    if (devnull > 2) close(devnull);
  }

  for (;;) {
    siginfo_t info;
    struct timespec wait_for;
    int sig;
    children = reap(&program_status, &program_done);
    if (program_done && phase == RUNNING) {
      phase = GRACE;
      deadline = now_ms() + exit_grace;
    }
    if (!children) break;
    if (deadline >= 0 && now_ms() >= deadline) {
      if (phase == GRACE || phase == RUNNING) {
        signal_tree(SIGTERM, 0);
        phase = TERM_SENT;
        deadline = now_ms() + kill_timeout;
      } else {
        /* KILL until the tree is empty: a process forking meanwhile is caught next round. */
        signal_tree(SIGKILL, 0);
        killed = 1;
        phase = KILLING;
        deadline = now_ms() + 100;
      }
      continue;
    }
    if (deadline >= 0) {
      long long left = deadline - now_ms();
      if (left < 0) left = 0;
      wait_for.tv_sec = (time_t)(left / 1000);
      wait_for.tv_nsec = (long)(left % 1000) * 1000000L;
      sig = sigtimedwait(&watched, &info, &wait_for);
    } else {
      sig = sigwaitinfo(&watched, &info);
    }
    if (sig == SIGTERM || sig == SIG_STOP_REST) {
      if (phase < TERM_SENT) {
        signal_tree(SIGTERM, sig == SIG_STOP_REST ? program : 0);
        phase = TERM_SENT;
        deadline = now_ms() + kill_timeout;
      }
    } else if (sig == SIG_KILL_TREE) {
      signal_tree(SIGKILL, 0);
      killed = 1;
      phase = KILLING;
      deadline = now_ms() + 100;
    } else if (sig > 0 && sig != SIGCHLD && sig != SIGPIPE && !program_done) {
      kill(program, sig);
    }
  }
  if (!program_done) program_status = 125 << 8;
  report(program_status, exec_error, cgroup_error);
  remove_cgroup(kill_timeout);
  if (exec_error || cgroup_error) _exit(127);
  exit_like(program_status);
  return 125;
}
