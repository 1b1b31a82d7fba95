"""Launched by tests/test_runner_ddp.py as `torchrun --standalone --nproc_per_node 2 ddp_runner_script.py OUT_DIR`.

Two CPU processes (gloo). Each rank starts from its own weights and its own batches, with different label-token
counts, and writes what it saw to OUT_DIR/rank{N}.json for the test to compare.
"""

import json
import os
import sys

import torch
from accelerate import Accelerator
from transformers import GPT2Config, GPT2LMHeadModel

import hf_lrfind.integrations.runner as runner_module
from hf_lrfind.integrations.runner import LRFinder

VOCAB, SEQ = 64, 16


def tiny_gpt2(seed):
    config = GPT2Config(
        n_layer=2,
        n_embd=32,
        n_head=2,
        vocab_size=VOCAB,
        n_positions=SEQ,
        bos_token_id=0,
        eos_token_id=0,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
    )
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = GPT2LMHeadModel(config)
    model.loss_type = "ForCausalLM"
    return model


def batches_for(rank, n=3, batch_size=4):
    g = torch.Generator().manual_seed(100 + rank)
    out = []
    for _ in range(n):
        ids = torch.randint(1, VOCAB, (batch_size, SEQ), generator=g)
        labels = ids.clone()
        labels[:, SEQ - 4 * (rank + 1) :] = -100  # rank 0 keeps more label tokens than rank 1
        out.append({"input_ids": ids, "labels": labels})
    return out


def main():
    out_dir = sys.argv[1]
    accelerator = Accelerator(cpu=True)
    rank = accelerator.process_index
    report = {"num_processes": accelerator.num_processes}

    # 1. Per-rank weights and batches: the curve is the token-weighted mean over both ranks, the same on both.
    model = tiny_gpt2(seed=rank)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    batches = batches_for(rank)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():  # step 1 runs on rank 0's weights (DDP broadcasts them) and each rank's first batch
        loss = tiny_gpt2(seed=0)(**batches[0]).loss.double()
    weight = (batches[0]["labels"][:, 1:] != -100).sum().double()
    losses, weights = accelerator.gather(loss.reshape(1)), accelerator.gather(weight.reshape(1))
    report["expected_first_loss"] = float((losses * weights).sum() / weights.sum())
    report["rank_first_losses"] = losses.tolist()
    finder = LRFinder(model, optimizer, accelerator=accelerator, progress=False)
    result = finder.range_test(batches, start_lr=1e-4, end_lr=10.0, num_steps=40, num_sweeps=1, check_every=5)
    report["result"] = result.to_dict()
    report["restored"] = all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    report["unwrapped"] = type(model).__name__ == "GPT2LMHeadModel" and accelerator._models == []
    # No DDP hook left behind: a backward now stays local, so the two ranks' gradients differ.
    model(**batches[0]).loss.backward()
    grad = model.lm_head.weight.grad.norm().reshape(1)
    report["grad_norms"] = accelerator.gather(grad).tolist()
    model.zero_grad()

    # 2. An unprepared DataLoader is sharded: each rank sees its own examples.
    ids = torch.arange(16 * SEQ).reshape(16, SEQ) % (VOCAB - 1) + 1
    dataset = [{"input_ids": row, "labels": row, "index": torch.tensor(i)} for i, row in enumerate(ids)]
    loader = torch.utils.data.DataLoader(dataset, batch_size=4)
    seen = []

    def forward_with_index(batch_model):
        real_forward = batch_model.forward

        def forward(input_ids, labels, index):
            seen.extend(index.tolist())
            return real_forward(input_ids=input_ids, labels=labels)

        return forward

    model.forward = forward_with_index(model)
    sharded = LRFinder(model, optimizer, accelerator=accelerator, progress=False).range_test(
        loader, start_lr=1e-4, end_lr=1e-2, num_steps=2, num_sweeps=1, diverge_threshold=None, skip_end=0
    )
    del model.forward
    report["seen_indices"] = seen
    report["sharded_tokens_seen"] = sharded.metadata["tokens_seen"]

    # 3. A NaN loss on rank 1 only: both ranks stop at the same step, nothing hangs.
    calls = []

    def nan_on_rank_1(outputs, batch):
        calls.append(1)
        return outputs.loss * float("nan") if rank == 1 and len(calls) == 4 else outputs.loss

    nan_result = LRFinder(model, optimizer, accelerator=accelerator, loss_fn=nan_on_rank_1, progress=False).range_test(
        batches, start_lr=1e-4, end_lr=1e-2, num_steps=20, num_sweeps=1, check_every=3
    )
    report["nan_stop"] = nan_result.stop_reason["all"]
    report["nan_steps"] = len(nan_result.losses["all"])

    # 4. Model and optimizer prepared by the user (DDP-wrapped), with the in-memory snapshot and with the
    # save_state/load_state one used for sharded state (FSDP, DeepSpeed): its folder is made on rank 0 and shared.
    fresh = tiny_gpt2(seed=rank)
    ddp_model, ddp_optimizer = accelerator.prepare(fresh, torch.optim.AdamW(fresh.parameters()))
    before = {k: v.clone() for k, v in ddp_model.state_dict().items()}
    real_uses_sharded_state = runner_module.uses_sharded_state
    for sharded in (False, True):
        runner_module.uses_sharded_state = lambda accelerator, sharded=sharded: sharded
        LRFinder(ddp_model, ddp_optimizer, accelerator=accelerator, progress=False).range_test(
            batches, start_lr=1e-3, end_lr=10.0, num_steps=6, snapshot_dir=out_dir
        )
        restored = all(torch.equal(before[k], v) for k, v in ddp_model.state_dict().items())
        report[f"prepared_restored_sharded_{sharded}"] = restored
    runner_module.uses_sharded_state = real_uses_sharded_state
    report["prepared_still_wrapped"] = type(ddp_model).__name__ == "DistributedDataParallel"
    accelerator.wait_for_everyone()  # the main process removes the folder; look once it is past that
    report["snapshot_folders_left"] = [n for n in os.listdir(out_dir) if n.startswith("hf_lrfind-")]

    # 5. The confirmation phase: both ranks run the same trials, each on the same batches, and keep the same rate.
    model = tiny_gpt2(seed=rank)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    confirmed = LRFinder(model, optimizer, accelerator=accelerator, progress=False).range_test(
        batches_for(rank, n=7), start_lr=1e-4, end_lr=10.0, num_steps=20, num_sweeps=1, confirm_steps=10, check_every=5
    )
    confirmation = dict(confirmed.metadata["confirmation"])
    confirmation.pop("wall_time_s")
    report["confirmation"] = confirmation
    report["confirmed"] = confirmed.suggestion()
    report["confirm_restored"] = all(torch.equal(before[k], v) for k, v in model.state_dict().items())

    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
        json.dump(report, f)
    accelerator.wait_for_everyone()


if __name__ == "__main__":
    main()
