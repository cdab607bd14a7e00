"""The security tests reuse the end-to-end harness and the rendered install, not copies.

The fixtures are imported here so pytest finds them for this package too.
"""

from __future__ import annotations

from tests.deploy.conftest import manifests_copy, rendered
from tests.e2e.conftest import flow, pod_root, webhooks

__all__ = ["flow", "manifests_copy", "pod_root", "rendered", "webhooks"]
