"""TLS for the plain (no cert-manager) install: ``latchkey-webhook certs``.

A checkout's way to run ``latchkey-webhook certs`` before installing the package
(it needs only ``cryptography``); the code is ``webhook/plain_certs.py``.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from webhook.plain_certs import main

if __name__ == "__main__":
    main(prog="hack/plain-certs.py")
