"""
The adapters: [`runner.LRFinder`] for your own accelerate loop, and `find_lr` / `LRFinderCallback` for the
`transformers.Trainer` ([`trainer`]). [`accelerate_state`] puts back what accelerate's `prepare()` changes, for both;
[`trainer_internals`] holds everything that reaches into the Trainer's private loop. accelerate and transformers are
imported on first use, so that `import hf_lrfind` stays light.
"""
