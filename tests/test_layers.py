"""No import cycle between modules, anywhere in the project's own packages. `.importlinter`'s
acyclic_siblings contract checks siblings inside each package; this also covers cycles that
cross the top-level packages, and names the modules. Imports made by string (the engine
plug-ins, loaded with importlib) are invisible here, as they are to lint-imports."""

from __future__ import annotations

import grimp

PACKAGES = ("server", "model", "training", "review", "loadtest")


def test_no_import_cycle():
    graph = grimp.build_graph(*PACKAGES)
    cycles: dict[frozenset[str], tuple[str, ...]] = {}
    for importer in sorted(graph.modules):
        for imported in sorted(graph.find_modules_directly_imported_by(importer)):
            back = graph.find_shortest_chain(importer=imported, imported=importer)
            if back:
                cycle = (importer, *back)
                cycles.setdefault(frozenset(cycle), cycle)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles.values())
