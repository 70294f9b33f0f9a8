"""Load the few ns-3 libraries a scenario needs, then compile our C++ helper against them.

Loading only these modules' libraries before including their headers avoids
the bindings' static-initialiser warning and halves the import time compared
with ``from ns import ns`` (see ns3_scenarios/README.md). Only worker processes import this.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

MODULES = ("core", "network", "internet", "mobility", "propagation", "spectrum", "antenna", "energy", "wifi")
HELPER = Path(__file__).with_name("adhoc_network.h")


def ns3_prefix() -> Path:
    spec = importlib.util.find_spec("ns3")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the ns3 package is not installed: run `make setup` (pip install ns3)")
    return Path(list(spec.submodule_search_locations)[0])


def ns3_version() -> str:
    from importlib.metadata import version

    return version("ns3")


@functools.cache
def load() -> object:
    """Return cppyy's global namespace with ns-3 and ``nsdml::AdhocNetwork`` available."""
    import cppyy
    import libcppyy

    prefix = ns3_prefix()
    libdir = prefix / "lib64"
    libcppyy.AddSmartPtrType("Ptr")
    cppyy.add_library_path(str(libdir))
    cppyy.add_include_path(str(prefix / "include"))
    release = ns3_version().split(".post")[0]
    for module in MODULES:
        cppyy.load_library(str(libdir / f"libns{release}-{module}.so"))
    for module in ("core", "network", "internet", "mobility", "wifi"):
        cppyy.include(f"ns3/{module}-module.h")
    cppyy.cppdef("using namespace ns3;")
    cppyy.include(str(HELPER))
    return cppyy.gbl
