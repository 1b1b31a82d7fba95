"""TRL's SFTTrainer with a PEFT LoRA config as a client: the sweep leaves no trace in what the trainer counts."""

import pytest
import torch

trl = pytest.importorskip("trl", reason="TRL is a test extra: pip install -e '.[test]'")
pytest.importorskip("peft", reason="PEFT is a test extra: pip install -e '.[test]'")

from datasets import Dataset  # noqa: E402
from peft import LoraConfig  # noqa: E402
from transformers import GPT2Config, GPT2LMHeadModel  # noqa: E402

from hf_lrfind import LRFinderCallback, find_lr, load_sample_text, train_tokenizer  # noqa: E402

TEXTS = load_sample_text()
TOKENIZER = train_tokenizer(TEXTS, vocab_size=300)
TRL_METRICS = {"entropy", "mean_token_accuracy", "num_tokens"}


def sft_trainer(tmp_path, callbacks=None, **kwargs):
    torch.manual_seed(0)
    eos = TOKENIZER.eos_token_id
    config = GPT2Config(
        vocab_size=len(TOKENIZER), n_embd=32, n_layer=2, n_head=2, n_positions=64, bos_token_id=eos, eos_token_id=eos
    )
    args = trl.SFTConfig(
        str(tmp_path),
        max_length=64,
        per_device_train_batch_size=4,
        max_steps=4,
        logging_steps=1,
        report_to="none",
        use_cpu=True,
        disable_tqdm=True,
        save_strategy="no",
        seed=0,
        **kwargs,
    )
    return trl.SFTTrainer(
        model=GPT2LMHeadModel(config),
        args=args,
        train_dataset=Dataset.from_dict({"text": TEXTS}),
        processing_class=TOKENIZER,
        peft_config=LoraConfig(r=4, target_modules=["c_attn"]),
        callbacks=callbacks,
    )


def step_logs(trainer):
    return [h for h in trainer.state.log_history if "loss" in h]


def finder_logs(trainer):
    return [h for h in trainer.state.log_history if any(k.startswith("lr_find/") for k in h)]


@pytest.fixture(scope="module")
def plain_logs(tmp_path_factory):
    trainer = sft_trainer(tmp_path_factory.mktemp("plain"))
    trainer.train()
    return step_logs(trainer)


def test_find_lr_with_groups_leaves_the_following_training_as_it_was(tmp_path, plain_logs):
    trainer = sft_trainer(tmp_path)
    result = find_lr(trainer, groups="auto", num_steps=10, save_to=None)
    assert "adapter" in result.groups and all(result.suggestions[g]["trough"] for g in result.groups)
    assert trainer._metrics["train"] == {} and trainer.state.num_input_tokens_seen == 0
    trainer.train()
    assert step_logs(trainer) == plain_logs  # num_tokens and TRL's metrics included


def test_callback_stop_then_train_is_train_alone(tmp_path, plain_logs):
    trainer = sft_trainer(tmp_path, callbacks=[LRFinderCallback(then="stop", num_steps=10, num_sweeps=1, save_to=None)])
    trainer.train()
    (logged,) = finder_logs(trainer)
    assert not TRL_METRICS & set(logged)  # the sweep's metrics do not ride along with the suggestions
    trainer.train()
    assert step_logs(trainer) == plain_logs


def test_callback_train_counts_only_the_training(tmp_path, plain_logs):
    finder = LRFinderCallback(then="train", num_steps=10, num_sweeps=1, save_to=None)
    trainer = sft_trainer(tmp_path, callbacks=[finder])
    trainer.train()
    (logged,) = finder_logs(trainer)
    assert not TRL_METRICS & set(logged)
    logs = step_logs(trainer)
    assert (
        logs[0]["num_tokens"] == plain_logs[0]["num_tokens"]
    )  # 15,460 against 458 before the fix, in a newcomer's run
    assert logs[0]["learning_rate"] == pytest.approx(finder.result.suggestion())  # what is logged is what is used
