/*
 * latchkey-env: start an app's original command with secret env vars set.
 *
 *   latchkey-env ENV_FILE -- COMMAND [ARG...]
 *
 * ENV_FILE holds NAME=VALUE records, each ended by a NUL byte (values may hold
 * newlines), written by the Latchkey agent into a memory volume. The wrapper is
 * a static executable so it runs in images with no shell and no libc
 * (distroless, scratch). It never prints a value: errors name the file or the
 * command only.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_ENV_FILE (1 << 20)

static int fail(const char *what, const char *name) {
    fprintf(stderr, "latchkey-env: %s: %s: %s\n", what, name, strerror(errno));
    return 1;
}

static char *read_all(const char *path, size_t *len) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return NULL;
    struct stat st;
    if (fstat(fd, &st) != 0 || st.st_size > MAX_ENV_FILE) {
        if (errno == 0) errno = EFBIG;
        close(fd);
        return NULL;
    }
    char *buf = malloc((size_t)st.st_size + 1);
    size_t got = 0;
    while (buf && got < (size_t)st.st_size) {
        ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
        if (n <= 0) {
            if (n == 0) errno = EIO;
            free(buf);
            buf = NULL;
            break;
        }
        got += (size_t)n;
    }
    close(fd);
    if (buf) buf[got] = '\0';
    *len = got;
    return buf;
}

static int load_env(const char *path) {
    size_t len = 0;
    char *buf = read_all(path, &len);
    if (!buf) return fail("cannot read env file", path);
    for (size_t start = 0; start < len;) {
        char *record = buf + start;
        size_t rlen = strnlen(record, len - start);
        char *eq = memchr(record, '=', rlen);
        if (eq == NULL || eq == record) {
            fprintf(stderr, "latchkey-env: malformed record in %s\n", path);
            return 1;
        }
        *eq = '\0';
        if (setenv(record, eq + 1, 1) != 0) return fail("cannot set variable", record);
        start += rlen + 1;
    }
    return 0; /* buf stays allocated: the environment points into it until exec */
}

int main(int argc, char **argv) {
    if (argc < 4 || strcmp(argv[2], "--") != 0) {
        fprintf(stderr, "usage: latchkey-env ENV_FILE -- COMMAND [ARG...]\n");
        return 2;
    }
    if (load_env(argv[1]) != 0) return 1;
    execvp(argv[3], &argv[3]);
    fail("cannot run", argv[3]);
    return errno == ENOENT ? 127 : 126;
}
