"""QLoRA on CPU: a sweep over a 4-bit (bitsandbytes NF4) model with LoRA adapters never touches the quantized weights.

The snapshot reads what a sweep can change by name (`named_parameters`/`named_buffers`), never through `state_dict()`:
bitsandbytes' `Linear4bit._save_to_state_dict` undoes the CPU repacking that an eval-mode forward without grad does
(on CPUs with AVX512-BF16) only in part, and so changes the weights.
"""

import pytest
import torch

bnb = pytest.importorskip("bitsandbytes", reason="bitsandbytes is a test extra: pip install -e '.[test]'")
peft = pytest.importorskip("peft", reason="PEFT is a test extra: pip install -e '.[test]'")

from accelerate import Accelerator  # noqa: E402
from accelerate.state import AcceleratorState, GradientState  # noqa: E402
from datasets import Dataset  # noqa: E402
from torch.optim.optimizer import register_optimizer_step_post_hook  # noqa: E402
from transformers import (  # noqa: E402
    BitsAndBytesConfig,
    LlamaConfig,
    LlamaForCausalLM,
    Trainer,
    TrainingArguments,
)

from hf_lrfind import find_lr  # noqa: E402
from hf_lrfind.core.state import StateSnapshot  # noqa: E402
from hf_lrfind.integrations.runner import LRFinder  # noqa: E402

VOCAB, SEQ, BATCH = 64, 16, 4
# peft's prepare_model_for_kbit_training still calls the names transformers 5 renamed to activation checkpointing
pytestmark = pytest.mark.filterwarnings("ignore:`(is_)?gradient_checkpointing(_enable)?` is deprecated:FutureWarning")
QUANT_FIELDS = ("absmax", "code", "offset", "shape", "dtype", "blocksize", "quant_type", "nested")


@pytest.fixture(autouse=True)
def one_thread_and_fresh_accelerate_state():
    # Tiny models: intra-op threads only add contention on a busy machine.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()
    yield
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A tiny random-init Llama saved to disk; skips the module where bitsandbytes cannot load it in 4 bits."""
    path = tmp_path_factory.mktemp("tiny-llama")
    config = LlamaConfig(
        vocab_size=VOCAB,
        # 128 = two blocks of 64 per row: the control below needs a CPU repack that reorders the absmax
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2 * SEQ,
    )
    with torch.random.fork_rng():
        torch.manual_seed(0)
        LlamaForCausalLM(config).save_pretrained(path)
    try:
        model = load_4bit(path)
    except Exception as e:  # a platform without a CPU backend, a bitsandbytes without CPU 4-bit support, ...
        pytest.skip(f"bitsandbytes {bnb.__version__} cannot load 4-bit weights on this platform: {e!r}")
    if not any(isinstance(p, bnb.nn.Params4bit) for p in model.parameters()):
        pytest.skip(f"bitsandbytes {bnb.__version__} loaded the model without Params4bit weights on this platform.")
    return path


def load_4bit(path):
    quantization = BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.float32
    )
    return LlamaForCausalLM.from_pretrained(path, quantization_config=quantization, device_map="cpu")


def qlora(path):
    model = peft.prepare_model_for_kbit_training(
        load_4bit(path), gradient_checkpointing_kwargs={"use_reentrant": False}
    )
    lora = peft.LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["q_proj", "v_proj"])
    return peft.get_peft_model(model, lora)


def lora_optimizer(model):
    return torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)


def token_ids(n, seed):
    return torch.randint(0, VOCAB, (n, SEQ), generator=torch.Generator().manual_seed(seed))


def batches(n=4):
    ids = token_ids(n * BATCH, seed=1)
    return [{"input_ids": chunk, "labels": chunk.clone()} for chunk in ids.split(BATCH)]


PROBE = token_ids(2, seed=2)


def logits(model):
    """Logits on a fixed input, in train mode (no dropout here) so that bitsandbytes does not repack the weights."""
    modes = {m: m.training for m in model.modules()}
    model.train()
    try:
        with torch.no_grad():
            return model(input_ids=PROBE, use_cache=False).logits.clone()
    finally:
        for module, training in modes.items():
            module.training = training


def eval_forward_without_grad(model):
    """The path on which bitsandbytes repacks CPU weights in place (on CPUs with AVX512-BF16)."""
    training = model.training
    model.eval()
    with torch.no_grad():
        model(input_ids=PROBE, use_cache=False)
    model.train(training)


def raw(t):
    """A tensor as (dtype, shape, bytes): equal means bit-identical."""
    t = t.detach()
    return t.dtype, tuple(t.shape), t.reshape(-1).contiguous().view(torch.uint8).numpy().tobytes()


def quant_state_fields(state, prefix=""):
    fields = {}
    for key in QUANT_FIELDS:
        value = getattr(state, key, None)
        fields[prefix + key] = raw(value) if isinstance(value, torch.Tensor) else value
    fields[prefix + "packing_format_for_cpu"] = getattr(state, "packing_format_for_cpu", False)
    if getattr(state, "state2", None) is not None:  # double quantization: the absmax are themselves quantized
        fields.update(quant_state_fields(state.state2, prefix + "state2."))
    return fields


def quantized(model):
    """Every Params4bit weight: its bytes and its quant state, field by field."""
    return {
        name: {"data": raw(p.data), **quant_state_fields(p.quant_state)}
        for name, p in model.named_parameters()
        if isinstance(p, bnb.nn.Params4bit)
    }


def trainable(model):
    return {name: raw(p) for name, p in model.named_parameters() if p.requires_grad}


def differences(before, after):
    """Names (and fields) that differ between two `quantized`/`trainable` records."""
    assert before.keys() == after.keys()
    out = []
    for name, a in before.items():
        b = after[name]
        if isinstance(a, dict):
            out += [(name, key) for key in a if a[key] != b.get(key)]
        elif a != b:
            out.append(name)
    return out


class Steps:
    """Counts optimizer steps and records whether the LoRA weights moved in them (the sweep is not a no-op)."""

    def __init__(self, model):
        self.model, self.start, self.count, self.moved = model, trainable(model), 0, False

    def __enter__(self):
        self.handle = register_optimizer_step_post_hook(self.hook)
        return self

    def hook(self, optimizer, args, kwargs):
        self.count += 1
        self.moved = self.moved or bool(differences(self.start, trainable(self.model)))

    def __exit__(self, *exc):
        self.handle.remove()


def assert_untouched(model, quant_before, lora_before, logits_before):
    assert quantized(model) and not differences(quant_before, quantized(model))
    assert not differences(lora_before, trainable(model))
    assert all(p.grad is None for p in model.parameters())
    assert torch.equal(logits(model), logits_before)


def sweep_with_runner(model):
    """Runs 8 steps; returns whether they moved the LoRA weights, and checks the result warns exactly when not."""
    finder = LRFinder(model, lora_optimizer(model), accelerator=Accelerator(cpu=True), progress=False)
    with Steps(model) as steps:
        result = finder.range_test(batches(), start_lr=1e-4, end_lr=1.0, num_steps=8, num_sweeps=1)
    assert steps.count == 8
    assert result.stop_reason == {"all": "num_steps"} and len(result.losses["all"]) == 8
    assert steps.moved != any(
        w.startswith("No gradient reached param group 'all'") for w in result.metadata["warnings"]
    )
    return steps.moved


def test_runner_sweep_leaves_4bit_weights_lora_and_logits_bit_identical(checkpoint):
    model = qlora(checkpoint)
    quant_before, lora_before, logits_before = quantized(model), trainable(model), logits(model)
    assert sweep_with_runner(model)
    assert_untouched(model, quant_before, lora_before, logits_before)


def test_runner_sweep_after_an_eval_forward_keeps_what_that_forward_left(checkpoint, monkeypatch):
    model = qlora(checkpoint)
    eval_forward_without_grad(model)
    # On a CPU with AVX512-BF16 the weights are now repacked for the CPU kernel (packing_format_for_cpu); elsewhere
    # (AVX2 only, as on the machine this test was written on) bitsandbytes leaves them as loaded. Either way the
    # sweep must give back exactly what the forward left, and must never run the state-dict hook that unpacks.
    quant_before, lora_before, logits_before = quantized(model), trainable(model), logits(model)
    saves = []
    save = bnb.nn.Linear4bit._save_to_state_dict
    monkeypatch.setattr(
        bnb.nn.Linear4bit, "_save_to_state_dict", lambda self, *a, **k: saves.append(self) or save(self, *a, **k)
    )
    # bitsandbytes 0.50 passes no gradient through CPU-repacked weights (gemv_4bit has no autograd kernel), so there
    # the LoRA weights cannot move and the result must say so; on AVX2-only CPUs they move.
    moved = sweep_with_runner(model)
    assert moved or any(fields["packing_format_for_cpu"] for fields in quant_before.values())
    assert saves == []
    assert_untouched(model, quant_before, lora_before, logits_before)


def cpu_repack(model):
    """What `Linear4bit.forward` does to its weight on an eval forward without grad on a CPU with AVX512-BF16."""
    convert = getattr(bnb.functional, "_convert_weight_packed_for_cpu", None)
    if convert is None:
        pytest.skip(f"bitsandbytes {bnb.__version__} has no CPU repacking (_convert_weight_packed_for_cpu).")
    for module in model.modules():
        if isinstance(module, bnb.nn.Linear4bit) and not getattr(
            module.weight.quant_state, "packing_format_for_cpu", False
        ):
            module.weight.data, _ = convert(module.weight.data, module.weight.quant_state)  # quant state in place


@pytest.mark.parametrize("repack", ["eval_forward", "emulated"])
def test_control_state_dict_changes_repacked_4bit_weights_and_the_snapshot_does_not(checkpoint, repack):
    """
    The control for the test above: after a repack, a plain `model.state_dict()` changes the weights, a snapshot and
    its restore do not. The eval forward repacks only on CPUs with AVX512-BF16 (skipped elsewhere); "emulated" calls
    the function that forward calls, so the effect is shown on any CPU (no forward runs while the weights are packed:
    without AVX512-BF16 bitsandbytes has no CPU kernel for that layout).
    """
    model = qlora(checkpoint)
    original, logits_before = quantized(model), logits(model)
    if repack == "eval_forward":
        eval_forward_without_grad(model)
        if not any(fields["packing_format_for_cpu"] for fields in quantized(model).values()):
            pytest.skip(
                f"bitsandbytes {bnb.__version__} repacks 4-bit weights on an eval forward only on CPUs with AVX512-BF16 (has_avx512bf16() is {bool(bnb.functional.has_avx512bf16())} here)."
            )
    else:
        cpu_repack(model)
    packed, lora = quantized(model), trainable(model)
    assert all(fields["packing_format_for_cpu"] for fields in packed.values())

    snapshot = StateSnapshot(model, lora_optimizer(model))
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(1.0)
    snapshot.restore()
    assert not differences(packed, quantized(model)) and not differences(lora, trainable(model))

    model.state_dict()
    # Unpacked only in part: the bytes, shape, dtype and flags are back, the absmax stay bf16 and transposed ...
    assert differences(original, quantized(model)) == [(name, "absmax") for name in original]
    # ... so the model computes something else than before the repack (by up to 0.29 here, bitsandbytes 0.50.2).
    drift = (logits(model) - logits_before).abs().max().item()
    assert drift > 0.05, drift


def test_snapshot_holds_only_lora_weights_and_buffers(checkpoint):
    model = qlora(checkpoint)
    optimizer = lora_optimizer(model)
    snapshot = StateSnapshot(model, optimizer)
    lora = {name for name, p in model.named_parameters() if p.requires_grad}
    buffers = {name for name, _ in model.named_buffers()}
    four_bit = {name for name, p in model.named_parameters() if isinstance(p, bnb.nn.Params4bit)}
    assert lora and all("lora_" in name for name in lora) and four_bit
    assert set(snapshot._tensors) == lora | buffers
    assert not any(isinstance(t, bnb.nn.Params4bit) for t in snapshot._tensors.values())
    saved = snapshot._state["tensors"]
    assert set(saved) == lora | buffers and not four_bit & set(saved)
    assert not any(isinstance(t, bnb.nn.Params4bit) for t in saved.values())

    saved_bytes = sum(t.numel() * t.element_size() for t in saved.values())
    model_bytes = sum(p.numel() * p.element_size() for p in model.parameters()) + sum(
        b.numel() * b.element_size() for b in model.buffers()
    )
    lora_bytes = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    assert lora_bytes <= saved_bytes < 0.1 * model_bytes, (saved_bytes, lora_bytes, model_bytes)
    snapshot.close()


def test_find_lr_through_the_trainer_leaves_4bit_weights_lora_and_logits_bit_identical(checkpoint, tmp_path):
    model = qlora(checkpoint)
    ids = token_ids(4 * BATCH, seed=1).tolist()
    args = TrainingArguments(
        output_dir=str(tmp_path),
        use_cpu=True,
        report_to=[],
        per_device_train_batch_size=BATCH,
        max_steps=8,
        learning_rate=1e-4,
        seed=0,
        disable_tqdm=True,
        save_strategy="no",
    )
    trainer = Trainer(model=model, args=args, train_dataset=Dataset.from_dict({"input_ids": ids, "labels": ids}))
    quant_before, lora_before, logits_before = quantized(model), trainable(model), logits(model)
    with Steps(model) as steps:
        result = find_lr(trainer, start_lr=1e-4, end_lr=1.0, num_steps=8, num_sweeps=1, save_to=None)
    assert steps.count == 8 and steps.moved
    assert len(result.losses["all"]) == 8
    assert_untouched(model, quant_before, lora_before, logits_before)
