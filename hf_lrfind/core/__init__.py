"""
The framework-neutral core: configuration, learning-rate schedules, the loss recorder, state snapshots, the sweep
engine and its strategies, the suggestion rules, the result and its plot.

Its modules import torch, numpy and (for plots, on first use) matplotlib, each other, and never transformers,
accelerate or an adapter (`tests/test_layout.py` reads the source to hold that): the adapters in
`hf_lrfind.integrations` build a `step_fn` and hand it to [`engine.range_test`] or [`strategies.run_strategy`].
"""
