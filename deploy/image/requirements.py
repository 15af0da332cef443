"""Print the requirements of modelserve and the given extras, one per line, read from
pyproject.toml: the image build installs them in a layer of their own, before the sources are
copied, so that a change to the code does not reinstall every dependency.

    python3 deploy/image/requirements.py pyproject.toml onnx,sklearn,s3
"""

from __future__ import annotations

import re
import sys
import tomllib


def requirements(project: dict[str, object], extras: list[str]) -> list[str]:
    name = str(project["name"])
    optional: dict[str, list[str]] = project.get("optional-dependencies", {})  # type: ignore[assignment]
    found: list[str] = list(project.get("dependencies", []))  # type: ignore[call-overload]
    pending, seen = list(extras), set()
    while pending:
        extra = pending.pop()
        if extra in seen:
            continue
        if extra not in optional:
            raise SystemExit(f"unknown extra {extra!r}; known: {', '.join(sorted(optional))}")
        seen.add(extra)
        for requirement in optional[extra]:
            itself = re.match(rf"^{re.escape(name)}\[([^\]]+)\]$", requirement.replace(" ", ""))
            if itself:
                pending.extend(itself.group(1).split(","))
            else:
                found.append(requirement)
    return sorted(set(found))


def main(argv: list[str]) -> int:
    path, extras = argv[0], argv[1] if len(argv) > 1 else ""
    with open(path, "rb") as handle:
        project = tomllib.load(handle)["project"]
    wanted = [e.strip() for e in extras.split(",") if e.strip()]
    print("\n".join(requirements(project, wanted)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
