/*
 * procsock_reaper: the process procsock puts between itself and a program when the run is
 * contained (LocalChannel `contain`), so that nothing the program starts outlives the run,
 * whatever process group or session it moves to.
 *
 *   procsock_reaper PARENT_PID EXIT_GRACE_MS KILL_TIMEOUT_MS GROUP FILE ARGV0 [ARG...]
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
 *
 * usage of the program and every descendant it reaped (RUSAGE_CHILDREN), how many processes
 * other than the program had to be signalled, and the errno of a failed exec (0 if none).
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
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
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
/* Distinct processes (other than the program) signalled so far, for the report. */
static pid_t signalled[MAX_TRACKED];
static int signalled_count = 0;
static int signalled_overflow = 0;

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

/*
 * Sends `sig` to every live descendant but `skip` — the program, and with GROUP its process
 * group's members — (0: none); returns how many were signalled.
 */
static int signal_tree(int sig, pid_t skip) {
  int count = 0, i, j, found = 0, head = 0;
  proc_entry *procs = read_parents(&count);
  pid_t *queue;
  pid_t *group;
  int *zombie;
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
    if (zombie[i]) continue;
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

static void report(int status, int exec_error) {
  struct rusage usage;
  char line[256];
  int length;
  memset(&usage, 0, sizeof usage);
  getrusage(RUSAGE_CHILDREN, &usage);
  length = snprintf(line, sizeof line,
                    "status=%d utime=%lld stime=%lld maxrss=%ld stopped=%d execerr=%d\n", status,
                    (long long)usage.ru_utime.tv_sec * 1000000 + usage.ru_utime.tv_usec,
                    (long long)usage.ru_stime.tv_sec * 1000000 + usage.ru_stime.tv_usec,
                    usage.ru_maxrss, signalled_count + signalled_overflow, exec_error);
  if (length > 0) write_report(line, length);
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
  int exec_error = 0, program_status = 0, program_done = 0, children = 1;
  /* Phases: running → (program exited) grace → (stopping) term → kill */
  enum { RUNNING, GRACE, TERM_SENT, KILLING } phase = RUNNING;
  long long deadline = -1;
  ssize_t n;
  int devnull;

  if (argc < 7 || parse_ms(argv[1], &parent) || parse_ms(argv[2], &exit_grace) ||
      parse_ms(argv[3], &kill_timeout) || (strcmp(argv[4], "0") && strcmp(argv[4], "1"))) {
    fprintf(stderr, "procsock_reaper: usage: procsock_reaper PARENT_PID EXIT_GRACE_MS KILL_TIMEOUT_MS GROUP FILE ARGV0 [ARG...]\n");
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
    prctl(PR_SET_PDEATHSIG, SIGTERM, 0, 0, 0);
    if (getppid() != (pid_t)parent) return 125;
  } else {
    prctl(PR_SET_PDEATHSIG, 0, 0, 0, 0);
  }

  if (pipe2(exec_pipe, O_CLOEXEC) != 0) return 125;
  program = fork();
  if (program < 0) {
    exec_error = errno;
    report(127 << 8, exec_error);
    return 127;
  }
  if (program == 0) {
    int error;
    /* The program's pid, from the program's side: in the pipe before it can print anything. */
    report_pid(getpid());
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
    error = errno;
    n = write(exec_pipe[1], &error, sizeof error);
    (void)n;
    _exit(127);
  }
  if (own_group || terminal) setpgid(program, program); /* as the child does: whichever runs first */
  close(exec_pipe[1]);
  do n = read(exec_pipe[0], &exec_error, sizeof exec_error);
  while (n < 0 && errno == EINTR);
  close(exec_pipe[0]);
  if (n != (ssize_t)sizeof exec_error) exec_error = 0;

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
      phase = KILLING;
      deadline = now_ms() + 100;
    } else if (sig > 0 && sig != SIGCHLD && sig != SIGPIPE && !program_done) {
      kill(program, sig);
    }
  }
  if (!program_done) program_status = 125 << 8;
  report(program_status, exec_error);
  if (exec_error) _exit(127);
  exit_like(program_status);
  return 125;
}
