import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


import pytest  # noqa: E402

from hf_lrfind import verbosity  # noqa: E402


@pytest.fixture(autouse=True)
def _records_reach_caplog():
    """pytest's caplog listens on the root logger; the package's logger does not propagate by default."""
    verbosity.enable_propagation()
    yield
    verbosity.disable_propagation()
