"""Injection over manifests, for ``latchkey-webhook inject`` (GitOps, previews,
clusters without the webhook).

A Pod, or the pod template of a workload, goes through the same
:func:`webhook.mutate.mutate_pod` as an admission request. Every other document
passes through byte for byte, comments included: the text is split at document
markers and only documents that changed are dumped again. When the split does
not agree with the YAML parser (directives, odd markers), every document is
dumped instead, which is still the same data.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from typing import Any

import yaml

from webhook.diff import clone
from webhook.errors import Denied
from webhook.mutate import mutate_pod
from webhook.problems import PREFIX
from webhook.settings import WebhookConfig
from webhook.targets import SYSTEM_NAMESPACES

# kind -> (API group, path from the document to its pod template)
WORKLOADS: dict[str, tuple[str, tuple[str, ...]]] = {
    "Pod": ("", ()),
    "Deployment": ("apps", ("spec", "template")),
    "StatefulSet": ("apps", ("spec", "template")),
    "DaemonSet": ("apps", ("spec", "template")),
    "ReplicaSet": ("apps", ("spec", "template")),
    "Job": ("batch", ("spec", "template")),
    "CronJob": ("batch", ("spec", "jobTemplate", "spec", "template")),
}
DOCUMENT_START = re.compile(r"^---(?=\s|$)", re.MULTILINE)
# The install's namespaceSelector: pods here never reach the webhook (the kustomize
# tests keep this equal to manifests/base).
EXCLUDED_NAMESPACES = frozenset({*SYSTEM_NAMESPACES, "latchkey"})


@dataclass(frozen=True)
class Injected:
    """The manifest text after injection, and what the user should read on stderr."""

    text: str
    warnings: tuple[str, ...]
    injected: int


def _group(api_version: object) -> str | None:
    if not isinstance(api_version, str):
        return None
    return api_version.rpartition("/")[0]


def _where(doc: dict[str, Any]) -> str:
    metadata = doc.get("metadata") or {}
    return f"{doc.get('kind')}/{metadata.get('name') or metadata.get('generateName') or '?'}"


def _template_path(doc: Any) -> tuple[str, ...] | None:
    """The path to the pod (template) of a workload we know, else None."""
    if not isinstance(doc, dict):
        return None
    group, path = WORKLOADS.get(str(doc.get("kind")), (None, ()))
    if group is None or _group(doc.get("apiVersion")) != group:
        return None
    return path


def _dig(doc: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any] | None:
    node: Any = doc
    for key in path:
        node = node.get(key) if isinstance(node, dict) else None
    return node if isinstance(node, dict) else None


def _as_pod(template: dict[str, Any]) -> dict[str, Any]:
    """A pod template seen as the Pod the controller will create from it."""
    metadata, spec = template.get("metadata") or {}, template.get("spec") or {}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}


def inject_document(
    doc: Any, *, config: WebhookConfig, namespace: str
) -> tuple[Any, tuple[str, ...]]:
    """``doc`` after injection (the same object when nothing changes), and warnings.

    Raises Denied, its message prefixed with the document's kind and name.
    """
    path = _template_path(doc)
    template = _dig(doc, path) if path is not None else None
    if path is None or template is None:
        return doc, ()
    namespace = (doc.get("metadata") or {}).get("namespace") or namespace
    pod = template if not path else _as_pod(template)
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    if namespace in EXCLUDED_NAMESPACES and any(str(k).startswith(PREFIX) for k in annotations):
        return doc, (
            f"{_where(doc)}: would not reach the webhook: the install's namespaceSelector "
            f"excludes namespace {namespace}, so the pod would start without secrets",
        )
    try:
        mutation = mutate_pod(pod, namespace=namespace, config=config)
    except Denied as exc:
        raise Denied(f"{_where(doc)}: {exc}") from exc
    warnings = tuple(f"{_where(doc)}: {warning}" for warning in mutation.warnings)
    if mutation.outcome != "injected" or mutation.pod is None:
        return doc, warnings
    if not path:
        return mutation.pod, warnings
    result = clone(doc)
    target = _dig(result, path)
    assert target is not None  # the copy has the template the original has
    target["metadata"] = mutation.pod["metadata"]
    target["spec"] = mutation.pod["spec"]
    return result, warnings


def _inject_list(doc: Any, *, config: WebhookConfig, namespace: str) -> tuple[Any, tuple[str, ...]]:
    """A ``kind: List`` (what ``kubectl get -o yaml`` prints) is injected item by item."""
    if not (isinstance(doc, dict) and doc.get("kind") == "List" and doc.get("items")):
        return inject_document(doc, config=config, namespace=namespace)
    items: list[Any] = []
    warnings: tuple[str, ...] = ()
    for item in doc["items"]:
        new, more = inject_document(item, config=config, namespace=namespace)
        items.append(new)
        warnings += more
    if all(new is old for new, old in zip(items, doc["items"], strict=True)):
        return doc, warnings
    return {**doc, "items": items}, warnings


def split_documents(text: str) -> list[str]:
    """The text of each document, marker included, so each can be kept verbatim."""
    starts = [match.start() for match in DOCUMENT_START.finditer(text) if match.start() > 0]
    bounds = [0, *starts, len(text)]
    return [text[start:end] for start, end in itertools.pairwise(bounds)]


def _parse(text: str) -> list[tuple[str | None, Any]]:
    """(verbatim text or None, document) pairs; None when the split cannot be trusted."""
    documents = [doc for doc in yaml.safe_load_all(text) if doc is not None]
    try:
        chunks = [(chunk, yaml.safe_load(chunk)) for chunk in split_documents(text)]
    except yaml.YAMLError:
        chunks = []
    if [doc for _, doc in chunks if doc is not None] != documents:
        return [(None, doc) for doc in documents]
    return [(chunk, doc) for chunk, doc in chunks if doc is not None or chunk.strip()]


def _dump(chunk: str | None, doc: Any) -> str:
    marker = "---\n" if chunk is None or chunk.startswith("---") else ""
    return marker + yaml.safe_dump(doc, sort_keys=False, default_flow_style=False)


def inject_manifests(text: str, *, config: WebhookConfig, namespace: str) -> Injected:
    """Every document of a multi-document YAML text, injected where it asks to be.

    Raises yaml.YAMLError for text that is not YAML, Denied for a bad pod.
    """
    out: list[str] = []
    warnings: tuple[str, ...] = ()
    count = 0
    for chunk, doc in _parse(text):
        new, more = _inject_list(doc, config=config, namespace=namespace)
        warnings += more
        if new is doc and chunk is not None:
            out.append(chunk if chunk.endswith("\n") else chunk + "\n")
            continue
        count += new is not doc
        out.append(_dump(chunk, new))
    return Injected("".join(out), warnings, count)
