"""Start-up time and idle RSS of modelserve, repeated: the figures of `run.py --only startup`
for modelserve alone, each repository started ``--repeat`` times in turn (so that a change of
background load spreads over all of them), with every figure and the median.

    .venv/bin/python benchmarks/startup.py [--repeat 5] [--modelserve-src DIR ...] [--no-compile]
        [--only SUBSTRING] [--json FILE]

``--modelserve-src DIR`` (a ``src/`` folder, e.g. of ``git archive``; ``.`` for the working
tree) may be given several times: each round then starts every repository with each source in
turn, so that a before/after comparison sees the same background load.

Repositories (benchmarks/repos.py): the examples' ONNX models (iris_onnx, mlp_onnx,
detector_onnx), the three-model batching repository (iris_onnx, mlp_onnx, iris_sklearn, as
Triton serves them) and iris_sklearn alone. Each start is measured as ``servers.start_modelserve``
measures it: from spawning ``python -m modelserve serve`` (pinned to core 0) to the first 200
from /v2/health/ready, and the RSS of the process tree 1 s later.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import repos
import servers
import tools


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="starts per repository (5)")
    servers.add_sources_option(parser)
    parser.add_argument(
        "--no-compile",
        action="store_true",
        help="do not compile modelserve's sources to bytecode first (run.py's --no-compile)",
    )
    parser.add_argument(
        "--only", default="", help="only the repositories whose name contains this (e.g. ONNX)"
    )
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    sources = servers.sources(args)
    if not args.no_compile:
        for source in sources:
            servers.use(source)
            tools.log(f"compiled {servers.compile_modelserve()}")
    built = repos.build_repos()
    logs = tools.BENCH_DIR / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    grpc = servers.modelserve_has_grpc()
    chosen = {
        "iris_onnx, mlp_onnx, detector_onnx (ONNX only)": (built.onnx_only, "off"),
        "iris_onnx, mlp_onnx, iris_sklearn; dynamic_batching": (built.batching, "on"),
        "iris_sklearn": (built.sklearn_only, "off"),
    }
    chosen = {name: repo for name, repo in chosen.items() if args.only in name}
    figures: dict[str, list[tuple[float, float]]] = {
        f"{name} [{source}]": [] for name in chosen for source in sources
    }
    try:
        for round_ in range(args.repeat):
            for name, (repo, batching) in chosen.items():
                for source in sources:
                    servers.use(source)
                    server = servers.start_modelserve(repo, batching, logs, grpc)
                    servers.stop(server.proc)
                    figures[f"{name} [{source}]"].append((server.startup_s, server.idle_rss_mb))
                    tools.log(
                        f"{round_ + 1}/{args.repeat} {name} [{source}]: ready "
                        f"{server.startup_s:.2f} s, idle RSS {server.idle_rss_mb:.0f} MB"
                    )
    finally:
        servers.stop_all()
    print(
        "| repository [modelserve source] | ready s (median) | each | idle RSS MB (median) | each |"
    )
    print("| --- | ---: | --- | ---: | --- |")
    for name, runs in figures.items():
        ready = [r for r, _ in runs]
        rss = [m for _, m in runs]
        print(
            f"| {name} | {statistics.median(ready):.2f} | {' '.join(f'{r:.2f}' for r in ready)} "
            f"| {statistics.median(rss):.0f} | {' '.join(f'{m:.0f}' for m in rss)} |"
        )
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
