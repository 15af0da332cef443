"""Extract the OpenAPI schema of one version of a CustomResourceDefinition into JSON.

    python deploy/schemas/extract.py CRD.yaml VERSION SOURCE > KIND.json

SOURCE is recorded in the file's ``$comment`` (the repository, commit and path the CRD came
from). ``description`` texts and the ``status`` subtree are dropped: they never change whether a
manifest we write validates, and dropping them keeps the files small. Everything else is kept
exactly as the CRD declares it; the tests (tests/unit/cli/test_manifests.py) add Kubernetes' strict
field validation (unknown fields are errors) when they validate against it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml


def _strip(node: Any) -> Any:
    if isinstance(node, dict):
        # A description text, never a property that happens to be named "description".
        return {
            k: _strip(v) for k, v in node.items() if not (k == "description" and isinstance(v, str))
        }
    if isinstance(node, list):
        return [_strip(item) for item in node]
    return node


def extract(crd: dict[str, Any], version: str, source: str) -> dict[str, Any]:
    for entry in crd["spec"]["versions"]:
        if entry["name"] == version:
            schema = entry["schema"]["openAPIV3Schema"]
            break
    else:
        raise SystemExit(f"{crd['metadata']['name']} has no version {version}")
    schema = _strip(schema)
    schema.get("properties", {}).pop("status", None)
    group = crd["spec"]["group"]
    kind = crd["spec"]["names"]["kind"]
    return {
        "$comment": f"{kind} {group}/{version} from {source} (descriptions and status dropped)",
        **schema,
    }


def main(argv: list[str]) -> int:
    path, version, source = argv
    docs = [d for d in yaml.safe_load_all(Path(path).read_text()) if d]
    print(json.dumps(extract(docs[0], version, source), sort_keys=True, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
