"""The app image of the container suite: ``FROM scratch`` with one static binary.

No shell, no libc, nothing but ``/app``: env injection must work through the
wrapper the agent copied, since the app image has nothing to source a file with.
``/app NAME... --watch FILE`` says whether a shell exists, prints each named
variable, then prints FILE's content each time it changes (as a rotation reaches
it), until SIGTERM.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from hack.images import KEY_LABEL, RUNTIME, ULIMITS, digest, label, podman

TAG = "localhost/latchkey-test-app:static"
SOURCE = r"""
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static volatile sig_atomic_t stop;
static void on_term(int sig) { (void)sig; stop = 1; }

int main(int argc, char **argv) {
    signal(SIGTERM, on_term);
    printf("shell: %s\n", access("/bin/sh", F_OK) == 0 ? "present" : "absent");
    const char *watch = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--watch") == 0 && i + 1 < argc) { watch = argv[++i]; continue; }
        const char *value = getenv(argv[i]);
        printf("%s=%s\n", argv[i], value ? value : "(unset)");
    }
    fflush(stdout);
    static char last[4096], now[4096];
    while (watch && !stop) {
        FILE *f = fopen(watch, "r");
        size_t n = f ? fread(now, 1, sizeof now - 1, f) : 0;
        if (f) fclose(f);
        now[n] = 0;
        if (strcmp(now, last) != 0) {
            printf("%s: %s\n", watch, now);
            fflush(stdout);
            memcpy(last, now, n + 1);
        }
        usleep(100000);
    }
    return 0;
}
"""
CONTAINERFILE = 'FROM scratch\nCOPY app /app\nENTRYPOINT ["/app"]\n'


def app_image(workdir: Path) -> str:
    """Build the image (reused while its source is unchanged); return its tag."""
    key = digest(SOURCE, CONTAINERFILE)
    if label(TAG) == key:
        return TAG
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "app.c").write_text(SOURCE, encoding="utf-8")
    (workdir / "Containerfile").write_text(CONTAINERFILE, encoding="utf-8")
    compile_app = ["cc", "-static", "-Os", "-s", "-o", str(workdir / "app"), str(workdir / "app.c")]
    subprocess.run(compile_app, check=True)
    podman(
        "build", *RUNTIME, *ULIMITS, "--label", f"{KEY_LABEL}={key}",
        "--file", str(workdir / "Containerfile"), "--tag", TAG, str(workdir),
    )  # fmt: skip
    return TAG
