"""Offline data for the benchmark, built from text that ships with Python (3.11 here; other versions give other text).

- `docstring_task()`: a 5-class text classification task: the first paragraph of the docstrings of the public
  functions, classes and methods of standard-library modules, labelled by the area of the library they come from
  (files, numbers, text, network, concurrency). About 1,600 texts; every 5th text (in a fixed order) is held out.
- `package_task()`: a 3-class task built the same way from the installed numpy, torch and transformers, labelled by
  package (their text depends on their versions), the classes cut to the smallest's size (every k-th text); held out
  as above. Added after every rule and factor was fixed, as a fine-tune none of them was chosen on.
- `hf_package_task()`: the same from the installed datasets, accelerate and peft: a second held-out fine-tune, added
  to judge the lead read off the first one's grids (a pretrained body at a third of the split strategy's rate).
- `tools_package_task()`: the same from the installed sympy, networkx and huggingface_hub: a third held-out fine-tune,
  added after `pretrained` became a sixth of the body curve's fitted bottom, to judge that rule on a fine-tune it was
  not read off.
- `python_docs_text()`: the Python language reference and library topics of `pydoc_data.topics` (about 465,000
  characters), one topic per text, in key order; the last tenth of the topics is held out.
"""

from __future__ import annotations

import functools
import importlib
import inspect

AREAS = {
    "files": ["os", "posixpath", "shutil", "pathlib", "glob", "tempfile", "zipfile", "tarfile", "filecmp", "fnmatch"],
    "numbers": ["math", "cmath", "statistics", "decimal", "fractions", "random", "numbers", "_pydecimal"],
    "text": ["re", "string", "textwrap", "difflib", "unicodedata", "codecs", "html.parser", "csv", "gettext", "locale"],
    "network": [
        "socket", "ssl", "http.client", "http.server", "urllib.request", "urllib.parse", "email.message", "smtplib",
        "ftplib", "http.cookiejar",
    ],
    "concurrency": [
        "threading", "multiprocessing.pool", "multiprocessing.managers", "asyncio.tasks", "asyncio.events",
        "asyncio.streams", "concurrent.futures._base", "queue", "subprocess", "sched", "selectors",
    ],
}  # fmt: skip


def _first_paragraphs(module_name: str) -> list[str]:
    module = importlib.import_module(module_name)
    out = []

    def add(obj: object) -> None:
        doc = inspect.getdoc(obj)
        if doc:
            text = doc.split("\n\n")[0].replace("\n", " ").strip()
            if 20 <= len(text) <= 400:
                out.append(text)

    for name, obj in sorted(vars(module).items()):
        if name.startswith("_"):
            continue
        if getattr(obj, "__module__", None) != module.__name__ and not inspect.isbuiltin(obj):
            continue  # imported from elsewhere
        if inspect.isclass(obj):
            add(obj)
            for member_name, member in sorted(vars(obj).items()):
                if not member_name.startswith("_") and (
                    inspect.isfunction(member) or inspect.ismethoddescriptor(member)
                ):
                    add(member)
        elif callable(obj):
            add(obj)
    return out


@functools.cache
def docstring_task() -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """`(train, eval)` lists of `(text, label)`, labelled by area."""
    return _labelled(AREAS)


PACKAGES = {
    "numpy": [
        "numpy", "numpy.linalg", "numpy.fft", "numpy.ma", "numpy.polynomial.polynomial", "numpy.lib.recfunctions",
        "numpy.random",
    ],
    "torch": [
        "torch.nn.functional", "torch.optim.optimizer", "torch.utils.data.dataset", "torch.distributions.distribution",
        "torch.nn.modules.module", "torch.autograd.functional", "torch.nn.init", "torch.utils.checkpoint",
        "torch.serialization", "torch.functional", "torch.nn.utils.rnn",
    ],
    "transformers": [
        "transformers.trainer", "transformers.training_args", "transformers.modeling_utils",
        "transformers.tokenization_utils_base", "transformers.configuration_utils", "transformers.generation.utils",
        "transformers.trainer_callback", "transformers.pipelines.base", "transformers.utils.hub",
    ],
}  # fmt: skip

HF_PACKAGES = {
    "datasets": [
        "datasets.arrow_dataset", "datasets.load", "datasets.features.features", "datasets.dataset_dict",
        "datasets.info", "datasets.iterable_dataset", "datasets.splits", "datasets.builder",
    ],
    "accelerate": [
        "accelerate.accelerator", "accelerate.utils.operations", "accelerate.state", "accelerate.big_modeling",
        "accelerate.data_loader", "accelerate.utils.dataclasses", "accelerate.utils.modeling", "accelerate.optimizer",
        "accelerate.hooks", "accelerate.utils.other", "accelerate.tracking", "accelerate.utils.fsdp_utils",
    ],
    "peft": [
        "peft.peft_model", "peft.tuners.lora.model", "peft.tuners.lora.layer", "peft.config", "peft.mapping",
        "peft.utils.other", "peft.tuners.tuners_utils", "peft.utils.save_and_load", "peft.tuners.lora.config",
        "peft.tuners.ia3.layer", "peft.tuners.adalora.layer", "peft.tuners.loha.layer", "peft.utils.integrations",
        "peft.tuners.lora.variants", "peft.tuners.oft.layer", "peft.tuners.boft.layer", "peft.mixed_model",
    ],
}  # fmt: skip

TOOLS_PACKAGES = {
    "sympy": [
        "sympy.core.expr", "sympy.solvers.solvers", "sympy.matrices.matrixbase", "sympy.simplify.simplify",
        "sympy.polys.polytools", "sympy.sets.sets", "sympy.logic.boolalg", "sympy.functions.elementary.trigonometric",
        "sympy.core.function",
    ],
    "networkx": [
        "networkx.classes.graph", "networkx.classes.digraph", "networkx.generators.classic", "networkx.algorithms.dag",
        "networkx.readwrite.gml", "networkx.drawing.layout", "networkx.algorithms.clique", "networkx.algorithms.tree.mst",
        "networkx.algorithms.shortest_paths.generic", "networkx.algorithms.matching", "networkx.algorithms.cycles",
        "networkx.algorithms.traversal.depth_first_search", "networkx.algorithms.centrality.betweenness",
        "networkx.algorithms.components.connected", "networkx.algorithms.flow.maxflow", "networkx.classes.function",
        "networkx.algorithms.operators.binary", "networkx.generators.random_graphs",
        "networkx.algorithms.link_analysis.pagerank_alg", "networkx.algorithms.isomorphism.isomorph",
        "networkx.convert_matrix",
    ],
    "huggingface_hub": [
        "huggingface_hub.hf_api", "huggingface_hub.file_download", "huggingface_hub.repocard",
        "huggingface_hub.utils._cache_manager", "huggingface_hub.inference._client", "huggingface_hub.hub_mixin",
        "huggingface_hub.community", "huggingface_hub.hf_file_system", "huggingface_hub.serialization._torch",
    ],
}  # fmt: skip

LIBS_PACKAGES = {
    "pandas": [
        "pandas.core.frame", "pandas.core.series", "pandas.core.generic", "pandas.io.parsers.readers",
        "pandas.core.groupby.groupby", "pandas.core.reshape.merge", "pandas.core.indexes.base",
        "pandas.core.tools.datetimes", "pandas.io.formats.style", "pandas.core.window.rolling",
        "pandas.core.arrays.categorical", "pandas.core.resample", "pandas.io.sql", "pandas.core.strings.accessor",
        "pandas.core.reshape.pivot",
    ],
    "matplotlib": [
        "matplotlib.axes._axes", "matplotlib.figure", "matplotlib.pyplot", "matplotlib.colors", "matplotlib.ticker",
        "matplotlib.text", "matplotlib.lines", "matplotlib.patches", "matplotlib.transforms", "matplotlib.axis",
    ],
    "pytest": [
        "_pytest.fixtures", "_pytest.python", "_pytest.main", "_pytest.config", "_pytest.mark.structures",
        "_pytest.monkeypatch", "_pytest.tmpdir", "_pytest.recwarn", "_pytest.capture", "_pytest.logging",
        "_pytest.nodes", "_pytest.runner", "_pytest.reports", "_pytest.terminal", "_pytest.pytester",
        "_pytest.outcomes",
    ],
}  # fmt: skip


def _labelled(
    groups: dict[str, list[str]], balance: bool = False
) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """`(train, eval)` rows of the first paragraphs of `groups`' modules, labelled by group; a text found in two
    groups is dropped; with `balance`, each group cut to the smallest's size (every k-th text). Every 5th is held out."""
    texts: dict[str, set[int]] = {}
    for label, modules in enumerate(groups.values()):
        for module in modules:
            for text in _first_paragraphs(module):
                texts.setdefault(text, set()).add(label)
    rows = [(text, labels.pop()) for text, labels in texts.items() if len(labels) == 1]
    if balance:
        by_label = [[r for r in rows if r[1] == label] for label in range(len(groups))]
        size = min(len(b) for b in by_label)
        picked = {id(b[i * len(b) // size]) for b in by_label for i in range(size)}
        rows = [r for r in rows if id(r) in picked]
    return [r for i, r in enumerate(rows) if i % 5], [r for i, r in enumerate(rows) if i % 5 == 0]


def _by_package(packages: dict[str, list[str]]) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    import warnings

    with warnings.catch_warnings():  # deprecated modules warn on import
        warnings.simplefilter("ignore")
        return _labelled(packages, balance=True)


@functools.cache
def package_task() -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """`(train, eval)` lists of `(text, label)`, labelled by package (numpy, torch, transformers)."""
    return _by_package(PACKAGES)


@functools.cache
def hf_package_task() -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """`(train, eval)` lists of `(text, label)`, labelled by package (datasets, accelerate, peft)."""
    return _by_package(HF_PACKAGES)


@functools.cache
def tools_package_task() -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """`(train, eval)` lists of `(text, label)`, labelled by package (sympy, networkx, huggingface_hub)."""
    return _by_package(TOOLS_PACKAGES)


@functools.cache
def libs_package_task() -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """`(train, eval)` lists of `(text, label)`, labelled by package (pandas, matplotlib, pytest)."""
    return _by_package(LIBS_PACKAGES)


@functools.cache
def python_docs_text() -> tuple[list[str], list[str]]:
    """`(train, eval)` lists of topic texts."""
    from pydoc_data.topics import topics

    texts = [topics[key] for key in sorted(topics)]
    cut = len(texts) - len(texts) // 10
    return texts[:cut], texts[cut:]
