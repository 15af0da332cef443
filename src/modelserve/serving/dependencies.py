"""Versions that depend on other models (a pipeline's model steps) serve only while those are
READY and fit.

After every change to the repository the lifecycle calls ``refresh_dependents``: a version whose
dependency is unknown, not READY, or does not fit (the dependent's own ``check_dependencies``:
input names and datatypes of a pipeline's steps) is held out of service, UNAVAILABLE with the
reason; it is released, READY again, once every dependency is back. Models are visited
dependencies first, so a chain (a pipeline using a pipeline) settles in one pass; models on a
dependency cycle are held with the cycle as the reason.
"""

from __future__ import annotations

from graphlib import CycleError, TopologicalSorter

from modelserve.errors import ServerError
from modelserve.serving.model import Dependency, LoadedModel
from modelserve.serving.repository import ModelRepository

__all__ = ["dependency_names", "refresh_dependents"]


def dependency_names(repository: ModelRepository, name: str) -> list[str]:
    """The models the loaded versions of ``name`` depend on, sorted."""
    return sorted(
        {dep.name for m in repository.built_models() if m.name == name for dep in m.dependencies()}
    )


def refresh_dependents(repository: ModelRepository, quiet: bool = False) -> None:
    """Hold every version whose dependencies do not serve or fit; release those whose do.
    ``quiet``: while the repository loads at start, a hold is no warning."""
    dependents = [m for m in repository.built_models() if m.dependencies()]
    if not dependents:
        return
    graph: dict[str, set[str]] = {}
    for model in dependents:
        graph.setdefault(model.name, set()).update(d.name for d in model.dependencies())
    cycles = _cycle_members(graph)
    order = {name: i for i, name in enumerate(_order(graph, set(cycles)))}
    dependents.sort(key=lambda m: order.get(m.name, -1))
    for model in dependents:
        reason = cycles.get(model.name) or _unmet(repository, model)
        if reason is None:
            repository.release(model.name, model.version)
        else:
            repository.hold(model.name, model.version, reason, quiet)


def _unmet(repository: ModelRepository, model: LoadedModel) -> str | None:
    resolved: dict[Dependency, LoadedModel] = {}
    for dep in model.dependencies():
        try:
            resolved[dep] = repository.serving(dep.name, dep.version)
        except ServerError as exc:
            return f"{dep.label or 'it'} needs model '{dep.name}': {exc.message}"
    return model.check_dependencies(resolved)


def _cycle_members(graph: dict[str, set[str]]) -> dict[str, str]:
    """Every model on a dependency cycle, with the cycle as its reason."""
    found: dict[str, str] = {}
    remaining = {name: set(deps) for name, deps in graph.items()}
    while True:
        try:
            TopologicalSorter(remaining).prepare()
        except CycleError as exc:
            cycle: list[str] = list(exc.args[1])
            reason = "dependency cycle: " + " -> ".join(cycle)
            for name in cycle:
                found.setdefault(name, reason)
            for name in cycle:
                remaining.pop(name, None)
            for deps in remaining.values():
                deps.difference_update(cycle)
            continue
        return found


def _order(graph: dict[str, set[str]], skip: set[str]) -> list[str]:
    """Model names, each after the models it depends on (cycle members left out)."""
    acyclic = {n: {d for d in deps if d not in skip} for n, deps in graph.items() if n not in skip}
    return list(TopologicalSorter(acyclic).static_order())
