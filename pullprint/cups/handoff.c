/*
 * pullprint's CUPS filter (pullprint-finish) and CUPS backend (pullprint): the hand-off to
 * `pullprint submitd`, in C.
 *
 * cupsd starts a filter and a backend process per job. As Python programs, even started with the
 * standard library only (pullprint/cups/handoff.py), each took ~20 ms and ~20 ms of CPU just to
 * start; this program starts in ~1 ms. It speaks the same wire format as handoff.py (version 1,
 * described there): connect to submitd's UNIX socket, read its greeting, pass the job's files
 * (SCM_RIGHTS) with argv, copy submitd's status lines to stderr and exit with its exit code.
 *
 * Everything else runs in Python: whenever the hand-off does not happen (not a job, no socket,
 * refused, declined, an error) this program executes the Python executable (FALLBACK below) with
 * the same argv and the job's document on stdin, with PULLPRINT_SUBMIT_SOCKET=off (the hand-off
 * was tried) and PULLPRINT_ARGV0 (a script loses argv[0] to its own path). When submitd took the
 * job and went away before answering, nothing is lost: the document was spooled into a temp file
 * first; the filter runs in-process from it, the backend finishes the first run in-process
 * (PULLPRINT_RESUME=1: an outbox entry submitd left is sent, a job it registered is not
 * registered again).
 *
 * Built once per role: -DPULLPRINT_BACKEND for the backend, none for the filter.
 * FALLBACK: -DPULLPRINT_FALLBACK='"/path"' (the .deb), else <ServerBin>/pullprint/<role>, found
 * from this program's own path <ServerBin>/<backend|filter>/<name> (pullprint/cups/install.py).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#ifdef PULLPRINT_BACKEND
#define ROLE "backend"
#else
#define ROLE "filter"
#endif

#define DEFAULT_SOCKET "/run/pullprint/submit.sock" /* node.submit_socket's default */
#define ENV_SOCKET "PULLPRINT_SUBMIT_SOCKET"        /* "" or "off": no hand-off */
#define ENV_CONFIG "PULLPRINT_CONFIG"
#define DEFAULT_CONFIG "/etc/pullprint/pullprint.toml"
#define ENV_ARGV0 "PULLPRINT_ARGV0"
#define ENV_RESUME "PULLPRINT_RESUME"
#define PROTOCOL "pullprint-submit/1"
#define MAX_REQUEST (1 << 20) /* bytes of one request (argv + env) */
#define MAX_LINE 4096         /* bytes of submitd's greeting or answer line */
#define CHUNK (1 << 16)
#define STOPPED "pullprint: stopped while receiving; nothing was registered"
#define READ_WAIT_MS 2000 /* longest wait for cupsd to read a failed filter's last lines */

enum outcome { HANDED_OFF, NOT_HANDED_OFF, VANISHED, STOPPED_BY_TERM };

static volatile sig_atomic_t stopping; /* SIGTERM came (the backend) */
static char why[512];                  /* why the hand-off did not happen */

#ifdef PULLPRINT_BACKEND
static void on_term(int sig) {
  (void)sig;
  stopping = 1;
}
#endif

static void say_why(const char *format, ...) __attribute__((format(printf, 1, 2)));
static void say_why(const char *format, ...) {
  va_list args;
  va_start(args, format);
  vsnprintf(why, sizeof why, format, args);
  va_end(args);
}

/* -- plain I/O, retried when a signal interrupts it (SIGPIPE is ignored: a closed pipe or
 * socket is an error returned) ----------------------------------------------------------- */

static int write_all(int fd, const char *data, size_t size) {
  while (size > 0) {
    ssize_t n = write(fd, data, size);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return -1;
    data += n;
    size -= (size_t)n;
  }
  return 0;
}

/* One line (without its newline) into line; "" at the end of the stream. -1 on an error. */
static int read_line(int sock, char *line, size_t size) {
  size_t used = 0;
  while (used + 1 < size) {
    char byte;
    ssize_t n = recv(sock, &byte, 1, 0);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      return -1;
    if (n == 0 || byte == '\n')
      break;
    line[used++] = byte;
  }
  line[used] = '\0';
  return 0;
}

/* -- where things are ------------------------------------------------------------------------ */

static const char *socket_path(void) {
  const char *path = getenv(ENV_SOCKET);
  if (path == NULL)
    return DEFAULT_SOCKET;
  if (path[0] == '\0' || strcmp(path, "off") == 0)
    return NULL;
  return path;
}

#ifdef PULLPRINT_BACKEND
/* The configuration file the in-process backend would load, absolute (submitd compares it). */
static void config_path(char *out, size_t size) {
  const char *path = getenv(ENV_CONFIG);
  char resolved[PATH_MAX];
  if (path == NULL || path[0] == '\0')
    path = DEFAULT_CONFIG;
  if (realpath(path, resolved) != NULL)
    snprintf(out, size, "%s", resolved);
  else if (path[0] == '/' || getcwd(resolved, sizeof resolved) == NULL)
    snprintf(out, size, "%s", path);
  else if (snprintf(out, size, "%s/%s", resolved, path) >= (int)size)
    snprintf(out, size, "%s", path);
}
#endif

static int fallback_path(char *out, size_t size) {
#ifdef PULLPRINT_FALLBACK
  snprintf(out, size, "%s", PULLPRINT_FALLBACK);
  return 0;
#else
  ssize_t n = readlink("/proc/self/exe", out, size - 1);
  if (n <= 0)
    return -1;
  out[n] = '\0';
  for (int i = 0; i < 2; i++) { /* <ServerBin>/backend/pullprint -> <ServerBin> */
    char *slash = strrchr(out, '/');
    if (slash == NULL)
      return -1;
    *slash = '\0';
  }
  size_t used = strlen(out);
  return snprintf(out + used, size - used, "/pullprint/%s", ROLE) < (int)(size - used) ? 0 : -1;
#endif
}

/* Run the Python executable in this process's place: stdin is `spooled` (from its start) when
 * the document was read already. Returns only when that fails (an exit code). */
static int run_in_process(char **argv, int spooled, int resume) {
  char path[PATH_MAX];
  if (why[0] != '\0')
    fprintf(stderr, "DEBUG: pullprint: %s: %s\n", resume ? "finishing in-process" :
            "running in-process", why);
  if (fallback_path(path, sizeof path) != 0) {
    fprintf(stderr, "ERROR: pullprint: cannot find the in-process %s\n", ROLE);
    return 1;
  }
  if (spooled >= 0) {
    if (lseek(spooled, 0, SEEK_SET) != 0 || dup2(spooled, 0) != 0) {
      fprintf(stderr, "ERROR: pullprint: cannot read back the spooled document: %s\n",
              strerror(errno));
      return 1;
    }
    close(spooled);
  }
  signal(SIGTERM, SIG_DFL);
  setenv(ENV_SOCKET, "off", 1);
  setenv(ENV_ARGV0, argv[0], 1);
  if (resume)
    setenv(ENV_RESUME, "1", 1);
  execv(path, argv);
  fprintf(stderr, "ERROR: pullprint: cannot run %s: %s\n", path, strerror(errno));
  return 1;
}

/* -- files ----------------------------------------------------------------------------------- */

/* An anonymous temp file in $TMPDIR (cupsd gives each job one): gone when closed. */
static int temp_file(void) {
  const char *folder = getenv("TMPDIR");
  char path[PATH_MAX];
  if (folder == NULL || folder[0] == '\0')
    folder = "/tmp";
  int fd = open(folder, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
  if (fd >= 0)
    return fd;
  snprintf(path, sizeof path, "%s/.pullprint-XXXXXX", folder); /* no O_TMPFILE there */
  fd = mkostemp(path, O_CLOEXEC);
  if (fd >= 0)
    unlink(path);
  return fd;
}

/* Copy stdin into a temp file, at most limit + 1 bytes (more is refused by submitd with the
 * limit's message): spliced in the kernel while stdin is a pipe (cupsd's, from the filter), else
 * read and written. The file, at its start, or -1 (why says why), or -2: SIGTERM came (the
 * backend). */
static int spool_stdin(long long limit) {
  static char buffer[CHUNK];
  long long left = limit + 1;
  int splicing = 1; /* until splice says stdin or the file takes none (EINVAL) */
  int fd = temp_file();
  if (fd < 0) {
    say_why("no temp file in $TMPDIR: %s", strerror(errno));
    return -1;
  }
  while (left > 0) {
    size_t want = left < 16 * CHUNK ? (size_t)left : 16 * CHUNK;
    ssize_t n;
    if (splicing) {
      n = splice(0, NULL, fd, NULL, want, SPLICE_F_MOVE);
      if (n < 0 && errno == EINVAL) {
        splicing = 0;
        continue;
      }
    } else {
      n = read(0, buffer, want < CHUNK ? want : CHUNK);
    }
    if (stopping) {
      close(fd);
      return -2;
    }
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0) {
      say_why("reading the document: %s", strerror(errno));
      close(fd);
      return -1;
    }
    if (n == 0)
      break;
    if (!splicing && write_all(fd, buffer, (size_t)n) != 0) {
      say_why("spooling the document: %s", strerror(errno));
      close(fd);
      return -1;
    }
    left -= n;
  }
  if (lseek(fd, 0, SEEK_SET) != 0) {
    say_why("spooling the document: %s", strerror(errno));
    close(fd);
    return -1;
  }
  return fd;
}

/* Write the file fd from its start to stdout. */
static int copy_out(int fd) {
  static char buffer[CHUNK];
  off_t offset = 0;
  for (;;) {
    ssize_t sent = sendfile(1, fd, &offset, 16 * CHUNK);
    if (sent == 0)
      return 0;
    if (sent > 0)
      continue;
    if (errno == EINTR)
      continue;
    if (errno != EINVAL && errno != ENOSYS)
      return -1;
    break; /* stdout is not something sendfile writes to: copy */
  }
  if (lseek(fd, offset, SEEK_SET) < 0)
    return -1;
  for (;;) {
    ssize_t n = read(fd, buffer, sizeof buffer);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      return -1;
    if (n == 0)
      return 0;
    if (write_all(1, buffer, (size_t)n) != 0)
      return -1;
  }
}

/* Widen the pipe on fd (cupsd's pipe between the filter and the backend) from 64 KiB to 1 MiB,
 * the most an unprivileged process may ask (/proc/sys/fs/pipe-max-size): the filter then writes a
 * document of that size without waiting for the backend to read each 64 KiB. Best effort. */
static void widen_pipe(int fd) {
  struct stat st;
  if (fstat(fd, &st) == 0 && S_ISFIFO(st.st_mode))
    (void)fcntl(fd, F_SETPIPE_SZ, 1 << 20);
}

/* -- the conversation with submitd ------------------------------------------------------------ */

/* Connect and read the greeting: the socket, with *limit set, or -1 (why says why). */
static int connect_submitd(const char *path, long long *limit) {
  struct sockaddr_un address = {.sun_family = AF_UNIX};
  struct timeval two_seconds = {.tv_sec = 2}, none = {0};
  char line[MAX_LINE];
  if (strlen(path) >= sizeof address.sun_path) {
    say_why("submitd at %s: the path is too long for a UNIX socket", path);
    return -1;
  }
  strcpy(address.sun_path, path);
  int sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (sock < 0) {
    say_why("submitd at %s: %s", path, strerror(errno));
    return -1;
  }
  setsockopt(sock, SOL_SOCKET, SO_RCVTIMEO, &two_seconds, sizeof two_seconds);
  setsockopt(sock, SOL_SOCKET, SO_SNDTIMEO, &two_seconds, sizeof two_seconds);
  int connected;
  while ((connected = connect(sock, (struct sockaddr *)&address, sizeof address)) != 0 &&
         errno == EINTR)
    ;
  if (connected != 0 || read_line(sock, line, sizeof line) != 0) {
    say_why("submitd at %s: %s", path, strerror(errno));
    close(sock);
    return -1;
  }
  char *end = NULL;
  if (strncmp(line, "READY ", 6) == 0 && line[6] >= '0' && line[6] <= '9')
    *limit = strtoll(line + 6, &end, 10);
  if (end == NULL || *end != '\0') {
    say_why("submitd at %s: %s", path, line[0] ? line : "closed the connection");
    close(sock);
    return -1;
  }
  setsockopt(sock, SOL_SOCKET, SO_RCVTIMEO, &none, sizeof none);
  setsockopt(sock, SOL_SOCKET, SO_SNDTIMEO, &none, sizeof none);
  return sock;
}

static int add_field(char *request, size_t *used, const char *field) {
  size_t size = strlen(field) + 1; /* with the NUL that separates it from the next */
  if (*used + size > 8 + MAX_REQUEST + 1)
    return -1;
  memcpy(request + *used, field, size);
  *used += size;
  return 0;
}

/* The request (op, config, argv, env) with its length prefix; its size, or 0 (why says why). */
static size_t encode_request(char *request, const char *op, const char *config, int argc,
                             char **argv) {
  static const char *const backend_env[] = {"PRINTER", "CLASS", "DEVICE_URI", "CONTENT_TYPE",
                                            "FINAL_CONTENT_TYPE", NULL};
  static char pair[MAX_REQUEST];
  char count[16];
  size_t used = 8;
  int failed = 0;
  snprintf(count, sizeof count, "%d", argc);
  failed |= add_field(request, &used, PROTOCOL) | add_field(request, &used, op);
  failed |= add_field(request, &used, config) | add_field(request, &used, count);
  for (int i = 0; i < argc && !failed; i++)
    failed |= add_field(request, &used, argv[i]);
  for (int i = 0; strcmp(op, "backend") == 0 && backend_env[i] && !failed; i++) {
    const char *value = getenv(backend_env[i]);
    if (value == NULL)
      continue;
    if (snprintf(pair, sizeof pair, "%s=%s", backend_env[i], value) >= (int)sizeof pair)
      failed = 1;
    else
      failed |= add_field(request, &used, pair);
  }
  used -= 1; /* no separator after the last field */
  if (failed || used - 8 > MAX_REQUEST) {
    say_why("request over the limit of %d bytes", MAX_REQUEST);
    return 0;
  }
  char prefix[9];
  snprintf(prefix, sizeof prefix, "%08zx", used - 8);
  memcpy(request, prefix, 8);
  return used;
}

/* Send the request with fds, copy the status lines to stderr; *code gets the exit code. */
static enum outcome submit(int sock, const char *request, size_t size, const int *fds, size_t nfds,
                           int *code) {
  char control[CMSG_SPACE(2 * sizeof(int))] = {0};
  struct iovec data = {.iov_base = (void *)request, .iov_len = size};
  struct msghdr message = {.msg_iov = &data,
                           .msg_iovlen = 1,
                           .msg_control = control,
                           .msg_controllen = CMSG_SPACE(nfds * sizeof(int))};
  struct cmsghdr *rights = CMSG_FIRSTHDR(&message);
  rights->cmsg_level = SOL_SOCKET;
  rights->cmsg_type = SCM_RIGHTS;
  rights->cmsg_len = CMSG_LEN(nfds * sizeof(int));
  memcpy(CMSG_DATA(rights), fds, nfds * sizeof(int));
  ssize_t sent;
  while ((sent = sendmsg(sock, &message, MSG_NOSIGNAL)) < 0 && errno == EINTR)
    ;
  char line[MAX_LINE];
  if (sent <= 0 || write_all(sock, request + sent, size - (size_t)sent) != 0 ||
      read_line(sock, line, sizeof line) != 0) {
    say_why("submitd: %s", strerror(errno));
    return NOT_HANDED_OFF;
  }
  if (strcmp(line, "OK") != 0) {
    say_why("submitd: %s", line[0] ? line : "closed the connection");
    return NOT_HANDED_OFF;
  }
  /* Status lines until "EXIT <code>", copied to stderr as whole lines. */
  static char pending[CHUNK + MAX_LINE];
  size_t held = 0;
  for (;;) {
    ssize_t n = recv(sock, pending + held, sizeof pending - held, 0);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      break;
    held += (size_t)n;
    char *start = pending, *newline;
    while ((newline = memchr(start, '\n', held - (size_t)(start - pending))) != NULL) {
      size_t length = (size_t)(newline - start) + 1;
      if (length > 5 && strncmp(start, "EXIT ", 5) == 0) {
        char *end = NULL;
        long value = strtol(start + 5, &end, 10);
        if (end == start + 5 || end != newline || value < 0 || value > 255) {
          say_why("submitd answered no exit code");
          return VANISHED; /* as if it went away: the job is finished in-process */
        }
        *code = (int)value;
        return HANDED_OFF;
      }
      write_all(2, start, length);
      start = newline + 1;
    }
    held -= (size_t)(start - pending);
    memmove(pending, start, held);
    if (held == sizeof pending) { /* a line longer than the buffer: pass it on as it is */
      write_all(2, pending, held);
      held = 0;
    }
  }
  say_why("submitd went away before it answered");
  return VANISHED;
}

/* Hand the job off: the document (argv[6], else stdin spooled into *spooled) and, for the
 * filter, the temp file submitd writes the prepared PDF into (*out). */
static enum outcome hand_off(int sock, int argc, char **argv, long long limit, int *spooled,
                             int *out, int *code) {
  static char request[8 + MAX_REQUEST + 1];
  char config[PATH_MAX] = "";
  int fds[2];
  size_t nfds = 0;
  if (argc == 7) {
    if ((fds[nfds++] = open(argv[6], O_RDONLY | O_CLOEXEC)) < 0) {
      say_why("%s: %s", argv[6], strerror(errno));
      return NOT_HANDED_OFF;
    }
  } else {
    if ((*spooled = spool_stdin(limit)) == -2 || (stopping && *spooled >= 0))
      return STOPPED_BY_TERM;
    if (*spooled < 0)
      return NOT_HANDED_OFF;
    fds[nfds++] = *spooled;
  }
#ifdef PULLPRINT_BACKEND
  (void)out;
  config_path(config, sizeof config);
#else
  if ((*out = fds[nfds++] = temp_file()) < 0) {
    say_why("no temp file in $TMPDIR: %s", strerror(errno));
    return NOT_HANDED_OFF;
  }
#endif
  size_t size = encode_request(request, ROLE, config, argc, argv);
  return size > 0 ? submit(sock, request, size, fds, nfds, code) : NOT_HANDED_OFF;
}

/* A failed filter's exit code, once cupsd has read its status lines. cupsd shows the first
 * ERROR: line it reads as the job's printer-state-message, unless it reaped the failed filter
 * first: then "Filter failed" stands and the line that says why is only logged. So before a
 * nonzero exit the filter waits (READ_WAIT_MS at most) until its stderr pipe is empty: cupsd
 * parses all it read before it looks at exited children. The backend's exit codes carry no such
 * message. */
static int after_read(int code) {
#ifndef PULLPRINT_BACKEND
  struct stat err;
  if (code == 0 || fstat(2, &err) != 0 || !S_ISFIFO(err.st_mode))
    return code;
  for (int waited = 0; waited < READ_WAIT_MS; waited += 2) {
    int unread = 0;
    if (ioctl(2, FIONREAD, &unread) != 0 || unread <= 0)
      break;
    struct timespec pause = {.tv_sec = 0, .tv_nsec = 2000000};
    nanosleep(&pause, NULL);
  }
#endif
  return code;
}

static int run(int argc, char **argv) {
  const char *path = socket_path();
  long long limit = 0;
  int code = 1, spooled = -1, out = -1;
  signal(SIGPIPE, SIG_IGN); /* a closed pipe or socket is an error to handle, not a death */
  widen_pipe(strcmp(ROLE, "backend") == 0 ? 0 : 1); /* whichever of the two comes first */
  if (path == NULL || (argc != 6 && argc != 7))
    return run_in_process(argv, -1, 0); /* not a job (discovery), or switched off */
  int sock = connect_submitd(path, &limit);
  if (sock < 0)
    return run_in_process(argv, -1, 0);
#ifdef PULLPRINT_BACKEND
  struct sigaction term = {.sa_handler = on_term}; /* no SA_RESTART: reading stdin stops */
  sigaction(SIGTERM, &term, NULL);
#endif
  enum outcome outcome = hand_off(sock, argc, argv, limit, &spooled, &out, &code);
  close(sock);
  switch (outcome) {
  case STOPPED_BY_TERM:
    fprintf(stderr, "INFO: %s\n", STOPPED);
    return 1; /* CUPS_BACKEND_FAILED, as the in-process backend */
  case HANDED_OFF:
    if (out >= 0 && code == 0 && copy_out(out) != 0) {
      fprintf(stderr, "ERROR: pullprint-finish: writing the prepared document: %s\n",
              strerror(errno));
      return 1;
    }
    return code;
  case VANISHED: /* the backend finishes what submitd began; the filter starts again */
    return run_in_process(argv, spooled, strcmp(ROLE, "backend") == 0);
  default:
    return run_in_process(argv, spooled, 0);
  }
}

int main(int argc, char **argv) { return after_read(run(argc, argv)); }
