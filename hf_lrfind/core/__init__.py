"""
The framework-neutral core: configuration, learning-rate schedules, the loss recorder, state snapshots, the sweep
engine and its strategies, the suggestion rules, the result and its plot.

It imports torch, numpy and (for plots) matplotlib, never transformers or accelerate: the adapters in
`hf_lrfind.integrations` build a `step_fn` and hand it to [`engine.range_test`] or [`strategies.run_strategy`].
Nothing is imported here, so that importing one core module loads only what it needs.
"""
