"""Configure OpenBao or Vault for a cluster: ``latchkey-webhook store-setup``.

A checkout's way to run ``latchkey-webhook store-setup`` before installing the package
(it needs only ``httpx``, ``pydantic`` and ``pyyaml``); the code is ``webhook/store_setup.py``.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from webhook.store_setup import main

if __name__ == "__main__":
    main(prog="hack/store-setup.py")
