"""Turn a CustomResourceDefinition into the JSON schema of its resource, the way datreeio/CRDs-catalog does.

`python tests/schemas/from_crd.py CRD.yaml VERSION OUT.json`: the version's openAPIV3Schema, with apiVersion and
kind pinned and `additionalProperties: false` on every object that lists its properties (a misspelt field fails
here, where the API server would prune it silently). Regenerates the vendored schemas (tests/schemas/README.md).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml


def ecma_pattern(pattern: str) -> str:
    """Go's `(?i)` has no ECMA-262 form (JSON schema's regex dialect): spell each letter as [aA] instead."""
    if "(?i)" not in pattern:
        return pattern
    assert "[" not in pattern and "\\" not in pattern, pattern
    return "".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else c for c in pattern.replace("(?i)", ""))


def strict(node: Any) -> Any:
    if isinstance(node, dict):
        node = {key: strict(value) for key, value in node.items()}
        if isinstance(node.get("pattern"), str):
            node["pattern"] = ecma_pattern(node["pattern"])
        if "properties" in node and "additionalProperties" not in node and not node.get(
                "x-kubernetes-preserve-unknown-fields"):
            node["additionalProperties"] = False
        return node
    if isinstance(node, list):
        return [strict(item) for item in node]
    return node


def resource_schema(crd: dict[str, Any], version: str) -> dict[str, Any]:
    served = {v["name"]: v for v in crd["spec"]["versions"]}
    schema = strict(served[version]["schema"]["openAPIV3Schema"])
    group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
    schema["properties"]["apiVersion"] = {"const": f"{group}/{version}"}
    schema["properties"]["kind"] = {"const": kind}
    schema["required"] = sorted({*schema.get("required", []), "apiVersion", "kind", "metadata", "spec"})
    return {"$schema": "http://json-schema.org/draft-07/schema#", "title": f"{kind} {group}/{version}", **schema}


def main() -> None:
    source, version, out = sys.argv[1:]
    crd = yaml.safe_load(Path(source).read_text())
    Path(out).write_text(json.dumps(resource_schema(crd, version), indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
