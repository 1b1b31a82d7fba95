"""
The adapters: [`runner.LRFinder`] for your own accelerate loop, and `find_lr` / `LRFinderCallback` for the
`transformers.Trainer` ([`trainer`], with [`trainer_sweep`]). [`accelerate_state`] puts back what accelerate's
`prepare()` changes, for both; [`accelerate_step`] is the runner's optimizer step; [`trainer_internals`] holds the
reach into the Trainer's loop (its frame, its batch fetching after a stop-mode sweep, its clipping) and why.
accelerate and transformers are imported on first use, so that `import hf_lrfind` stays light.
"""
