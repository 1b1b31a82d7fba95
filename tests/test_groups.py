"""Parameter groups: auto head/body/adapter detection, explicit patterns, layer decay, param groups with the Trainer's
weight-decay split, and optimizers built from a result's per-group suggestions."""

import logging

import pytest
import torch
from transformers import (
    BertConfig,
    BertForMaskedLM,
    BertForSequenceClassification,
    GPT2Config,
    GPT2LMHeadModel,
)

from hf_lrfind import LRFinderResult
from hf_lrfind.groups.build import build_param_groups, layer_decay_ratios, no_decay_names, param_groups_from_result
from hf_lrfind.groups.detect import detect_groups


def bert_config(**kwargs):
    return BertConfig(
        vocab_size=100,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=64,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        **kwargs,
    )


def seeded(build, seed=0):
    """Build a model under a seed without touching the caller's global RNG."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return build()


def tiny_bert(num_labels=3, seed=0):
    return seeded(lambda: BertForSequenceClassification(bert_config(num_labels=num_labels)), seed)


def tiny_gpt2(tie=True):
    config = GPT2Config(
        vocab_size=100,
        n_embd=32,
        n_layer=2,
        n_head=2,
        n_positions=64,
        tie_word_embeddings=tie,
        bos_token_id=0,
        eos_token_id=0,
    )
    return seeded(lambda: GPT2LMHeadModel(config))


def trainable_names(model):
    return [n for n, p in model.named_parameters() if p.requires_grad]


# --- groups="auto" ---------------------------------------------------------------------------------------------------


def test_auto_bert_head_is_the_classifier_and_the_pooler_is_body():
    model = tiny_bert()
    groups = detect_groups(model)
    assert list(groups) == ["head", "body"]
    assert groups["head"] == ["classifier.weight", "classifier.bias"]
    assert groups["body"] == [n for n in trainable_names(model) if not n.startswith("classifier.")]
    assert "bert.pooler.dense.weight" in groups["body"]


def test_auto_gpt2_tied_lm_head_is_body_counted_once_and_there_is_no_head(caplog):
    model = tiny_gpt2(tie=True)
    assert model.lm_head.weight is model.transformer.wte.weight
    with caplog.at_level(logging.WARNING, logger="hf_lrfind"):
        groups = detect_groups(model)
    assert list(groups) == ["body"]
    # One group is not what groups="auto" promises: a warning says why, where a user sees it.
    assert "No new head found" in caplog.text and "['body']" in caplog.text
    assert "transformer.wte.weight" in groups["body"] and "lm_head.weight" not in groups["body"]
    assert len(groups["body"]) == len(set(groups["body"])) == len(list(model.parameters()))


def test_auto_gpt2_untied_lm_head_is_outside_the_base_model_so_head():
    groups = detect_groups(tiny_gpt2(tie=False))
    assert groups["head"] == ["lm_head.weight"]
    assert "transformer.wte.weight" in groups["body"]


def test_auto_from_loading_info_marks_missing_keys_as_head(tmp_path):
    # An MLM checkpoint has no pooler: loaded as a classifier, both the pooler and the classifier are new. The
    # base_model rule alone would call the pooler pretrained.
    seeded(lambda: BertForMaskedLM(bert_config())).save_pretrained(tmp_path)
    model, info = BertForSequenceClassification.from_pretrained(tmp_path, num_labels=2, output_loading_info=True)
    groups = detect_groups(model, loading_info=info)
    assert sorted(groups["head"]) == sorted(
        ["bert.pooler.dense.weight", "bert.pooler.dense.bias", "classifier.weight", "classifier.bias"]
    )
    assert sorted(groups["head"] + groups["body"]) == sorted(trainable_names(model))
    assert "bert.pooler.dense.weight" in detect_groups(model)["body"]


def test_auto_from_loading_info_counts_size_mismatched_weights_as_head(tmp_path):
    tiny_bert(num_labels=2).save_pretrained(tmp_path)
    model, info = BertForSequenceClassification.from_pretrained(
        tmp_path, num_labels=5, ignore_mismatched_sizes=True, output_loading_info=True
    )
    assert not info["missing_keys"]
    assert detect_groups(model, loading_info=info)["head"] == ["classifier.weight", "classifier.bias"]


def test_loading_info_matches_through_a_wrapper_prefix_without_base_model():
    class Wrapper(torch.nn.Module):  # like DDP: no base_model, names prefixed with "module."
        def __init__(self, module):
            super().__init__()
            self.module = module

    model = Wrapper(tiny_bert())
    info = {"missing_keys": ["classifier.weight", "classifier.bias"], "unexpected_keys": [], "mismatched_keys": []}
    groups = detect_groups(model, loading_info=info)
    assert groups["head"] == ["module.classifier.weight", "module.classifier.bias"]
    assert len(groups["body"]) == len(trainable_names(model)) - 2


def test_auto_without_base_model_or_loading_info_says_to_pass_groups():
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 2))
    with pytest.raises(ValueError, match="explicit groups"):
        detect_groups(model)


def test_loading_info_must_be_the_dict_from_pretrained_returns():
    model = tiny_bert()
    with pytest.raises(TypeError, match="output_loading_info=True"):
        detect_groups(model, loading_info=(model, {"missing_keys": []}))


def test_auto_peft_lora_adapter_and_modules_to_save_head_frozen_base_left_out():
    peft = pytest.importorskip("peft", reason="peft is needed for the PEFT group test")
    model = peft.get_peft_model(
        tiny_bert(), peft.LoraConfig(task_type="SEQ_CLS", r=4, target_modules=["query", "value"])
    )
    groups = detect_groups(model)
    assert list(groups) == ["head", "adapter"]
    assert groups["head"] == [
        "base_model.model.classifier.modules_to_save.default.weight",
        "base_model.model.classifier.modules_to_save.default.bias",
    ]
    assert len(groups["adapter"]) == 8  # lora_A and lora_B of query and value in 2 layers
    assert all(".lora_A." in n or ".lora_B." in n for n in groups["adapter"])
    assert sorted(groups["head"] + groups["adapter"]) == sorted(trainable_names(model))
    assert not any("original_module" in n or "base_layer" in n for g in groups.values() for n in g)


def test_frozen_parameters_are_left_out_and_the_log_says_where_everything_went(caplog):
    model = tiny_bert()
    for p in model.bert.embeddings.parameters():
        p.requires_grad_(False)
    caplog.set_level(logging.INFO, logger="hf_lrfind.groups")
    groups = detect_groups(model)
    assert not any(n.startswith("bert.embeddings.") for n in groups["body"])
    messages = [r.getMessage() for r in caplog.records]
    head_params = sum(p.numel() for p in model.classifier.parameters())
    assert f"Group 'head': 2 tensors, {head_params:,} parameters: classifier.weight, classifier.bias" in messages
    body = next(m for m in messages if m.startswith("Group 'body': 34 tensors"))
    assert "bert.encoder.layer.*" in body
    frozen = sum(p.numel() for p in model.bert.embeddings.parameters())
    assert f"Left out 5 frozen tensors ({frozen:,} parameters): they are not trained." in messages


# --- explicit groups -------------------------------------------------------------------------------------------------


def test_explicit_patterns_first_matching_group_wins():
    model = tiny_bert()
    spec = {"head": "classifier.*", "top": ["bert.encoder.layer.1.*", "bert.pooler.*"], "body": ["*"]}
    groups = detect_groups(model, spec)
    assert list(groups) == ["head", "top", "body"]
    assert groups["head"] == ["classifier.weight", "classifier.bias"]
    assert all(n.startswith(("bert.encoder.layer.1.", "bert.pooler.")) for n in groups["top"])
    assert len(groups["top"]) == 18
    assert sorted(sum(groups.values(), [])) == sorted(trainable_names(model))


def test_explicit_patterns_leaving_a_parameter_out_raise():
    with pytest.raises(ValueError, match=r"match no group pattern.*catch-all"):
        detect_groups(tiny_bert(), {"head": ["classifier.*"]})


def test_explicit_pattern_matching_nothing_raises():
    with pytest.raises(ValueError, match="'head'.*match no parameter"):
        detect_groups(tiny_bert(), {"head": ["classifer.*"], "body": ["*"]})


def test_explicit_groups_must_map_to_patterns():
    with pytest.raises(TypeError, match="fnmatch globs"):
        detect_groups(tiny_bert(), {"head": 3})


def test_groups_from_the_optimizer_named_param_groups():
    model = tiny_bert()
    head = list(model.classifier.parameters())
    body = [p for n, p in model.named_parameters() if not n.startswith("classifier.")]
    optimizer = torch.optim.AdamW([{"params": body, "name": "body"}, {"params": head, "name": "head", "lr": 1e-3}])
    groups = detect_groups(model, "optimizer", optimizer=optimizer)
    assert groups == detect_groups(model, {"body": ["bert.*"], "head": ["classifier.*"]})


def test_groups_from_the_optimizer_need_names_and_an_optimizer():
    model = tiny_bert()
    with pytest.raises(ValueError, match="pass optimizer="):
        detect_groups(model, "optimizer")
    with pytest.raises(ValueError, match="has no 'name'"):
        detect_groups(model, "optimizer", optimizer=torch.optim.SGD(model.parameters(), lr=0.1))


# --- layer decay -----------------------------------------------------------------------------------------------------


def test_layer_decay_groups_and_ratios_on_bert():
    model = tiny_bert()
    groups = detect_groups(model, layer_decay=0.9)
    assert list(groups) == ["head", "layer_1", "layer_0", "embeddings"]
    assert groups["head"] == ["classifier.weight", "classifier.bias"]
    assert all(n.startswith("bert.embeddings.") for n in groups["embeddings"]) and len(groups["embeddings"]) == 5
    assert all(n.startswith("bert.encoder.layer.0.") for n in groups["layer_0"]) and len(groups["layer_0"]) == 16
    assert groups["layer_1"][-2:] == ["bert.pooler.dense.weight", "bert.pooler.dense.bias"]  # pooler on the top layer
    assert all(n.startswith("bert.encoder.layer.1.") for n in groups["layer_1"][:-2])
    assert sorted(sum(groups.values(), [])) == sorted(trainable_names(model))
    assert layer_decay_ratios(groups, 0.9) == pytest.approx(
        {"head": 1.0, "layer_1": 0.9, "layer_0": 0.81, "embeddings": 0.729}
    )


def test_layer_decay_groups_and_ratios_on_tied_gpt2():
    groups = detect_groups(tiny_gpt2(), layer_decay=0.5)
    assert list(groups) == ["layer_1", "layer_0", "embeddings"]
    assert groups["embeddings"] == ["transformer.wte.weight", "transformer.wpe.weight"]
    assert groups["layer_1"][-2:] == ["transformer.ln_f.weight", "transformer.ln_f.bias"]
    assert all(n.startswith("transformer.h.0.") for n in groups["layer_0"])
    assert layer_decay_ratios(groups, 0.5) == {"layer_1": 0.5, "layer_0": 0.25, "embeddings": 0.125}


@pytest.mark.parametrize("bad", [0, 1.5, -0.1, True])
def test_layer_decay_out_of_range_raises(bad):
    with pytest.raises(ValueError, match=r"must be a float in \(0, 1\]"):
        detect_groups(tiny_bert(), layer_decay=bad)


def test_layer_decay_needs_auto_groups_and_a_stack():
    with pytest.raises(ValueError, match="groups='auto' only"):
        detect_groups(tiny_bert(), {"all": "*"}, layer_decay=0.9)
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 2))
    with pytest.raises(ValueError, match="needs a stack of layers"):
        detect_groups(model, loading_info={"missing_keys": ["1.weight", "1.bias"]}, layer_decay=0.9)


def test_layer_decay_ratios_reject_other_group_names():
    with pytest.raises(ValueError, match="'body'"):
        layer_decay_ratios(["head", "body"], 0.9)


# --- build_param_groups ----------------------------------------------------------------------------------------------


def test_build_param_groups_keeps_the_trainer_weight_decay_split_and_covers_each_parameter_once():
    model = tiny_bert()
    groups = detect_groups(model)
    param_groups = build_param_groups(model, groups, {"head": 1e-3, "body": 1e-5}, weight_decay=0.01)
    assert [(g["name"], g["lr"], g["weight_decay"]) for g in param_groups] == [
        ("head", 1e-3, 0.01),
        ("head", 1e-3, 0.0),
        ("body", 1e-5, 0.01),
        ("body", 1e-5, 0.0),
    ]
    names = {id(p): n for n, p in model.named_parameters()}
    for g in param_groups:
        plain = [("bias" in names[id(p)] or "LayerNorm" in names[id(p)]) for p in g["params"]]
        assert all(plain) if g["weight_decay"] == 0.0 else not any(plain)
    ids = [id(p) for g in param_groups for p in g["params"]]
    assert len(ids) == len(set(ids)) and set(ids) == {id(p) for p in model.parameters()}
    optimizer = torch.optim.AdamW(param_groups)
    assert detect_groups(model, "optimizer", optimizer=optimizer) == groups  # the engine sees two named groups


def test_no_decay_names_follow_the_trainer():
    from transformers import Trainer

    model = tiny_gpt2()
    decay = set(Trainer.get_decay_parameter_names(None, model))
    assert no_decay_names(model) == {n for n, _ in model.named_parameters(remove_duplicate=False)} - decay
    assert "transformer.h.0.ln_1.weight" in no_decay_names(model)  # a LayerNorm by type, not by name


def test_build_param_groups_drops_empty_param_groups_and_takes_one_lr():
    model = tiny_bert()
    groups = detect_groups(model, {"biases": "*.bias", "rest": "*"})
    param_groups = build_param_groups(model, groups, 0.1, weight_decay=0.01)
    assert [(g["name"], g["weight_decay"]) for g in param_groups] == [("biases", 0.0), ("rest", 0.01), ("rest", 0.0)]
    assert {g["lr"] for g in param_groups} == {0.1}


def test_build_param_groups_custom_no_decay():
    model = tiny_bert()
    groups = {"head": ["classifier.weight", "classifier.bias"]}
    param_groups = build_param_groups(model, groups, 1e-3, weight_decay=0.1, no_decay=["classifier.weight"])
    assert [(g["params"], g["weight_decay"]) for g in param_groups] == [
        ([model.classifier.bias], 0.1),
        ([model.classifier.weight], 0.0),
    ]


def test_build_param_groups_errors():
    model = tiny_bert()
    groups = detect_groups(model)
    with pytest.raises(ValueError, match=r"No learning rate for the groups \['body'\]"):
        build_param_groups(model, groups, {"head": 1e-3})
    with pytest.raises(ValueError, match="not a parameter of this model"):
        build_param_groups(model, {"head": ["lm_head.weight"]}, 1e-3)
    with pytest.raises(ValueError, match="in both group 'a' and group 'b'"):
        build_param_groups(model, {"a": ["classifier.bias"], "b": ["classifier.bias"]}, 1e-3)


# --- param groups from a result --------------------------------------------------------------------------------------


def hand_made_result(suggestions, metadata=None):
    lrs = [1e-5, 1e-4, 1e-3]
    return LRFinderResult(
        lrs={g: lrs for g in suggestions},
        losses={g: [1.0, 0.8, 2.0] for g in suggestions},
        smoothed_losses={g: [1.0, 0.9, 1.3] for g in suggestions},
        suggestions={g: {"trough": lr, "steep": None} for g, lr in suggestions.items()},
        stop_reason={g: "num_steps" for g in suggestions},
        metadata=metadata or {},
    )


def fixed_batch(batch_size=8, length=12, num_labels=3):
    g = torch.Generator().manual_seed(0)
    return {
        "input_ids": torch.randint(0, 100, (batch_size, length), generator=g),
        "labels": torch.randint(0, num_labels, (batch_size,), generator=g),
    }


def test_adamw_from_result_param_groups_carries_the_suggestions_and_trains(tmp_path):
    model = tiny_bert()
    groups = detect_groups(model)
    result = hand_made_result({"head": 3e-2, "body": 3e-3}, {"groups": groups})
    result.save(tmp_path / "result.json")
    result = LRFinderResult.load(tmp_path / "result.json")  # the stored groups survive the JSON round trip
    optimizer = torch.optim.AdamW(result.param_groups(model, "trough", weight_decay=0.01))
    assert {(g["name"], g["lr"]) for g in optimizer.param_groups} == {("head", 3e-2), ("body", 3e-3)}
    assert [g["weight_decay"] for g in optimizer.param_groups] == [0.01, 0.0, 0.01, 0.0]
    batch = fixed_batch()
    model.train()
    losses = []
    for _ in range(8):
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < 0.25 * losses[0]


def test_param_groups_from_result_without_stored_groups_detects_them():
    model = tiny_bert()
    result = hand_made_result({"body": 1e-4, "head": 1e-2})
    param_groups = param_groups_from_result(result, model)
    assert {(g["name"], g["lr"]) for g in param_groups} == {("head", 1e-2), ("body", 1e-4)}
    single = param_groups_from_result(hand_made_result({"all": 3e-4}), model)
    assert {g["lr"] for g in single} == {3e-4}
    assert sum(len(g["params"]) for g in single) == len(trainable_names(model))


def test_param_groups_from_result_with_layer_decay_groups():
    model = tiny_bert()
    groups = detect_groups(model, layer_decay=0.5)
    ratios = layer_decay_ratios(groups, 0.5)
    result = hand_made_result({g: 1e-2 * r for g, r in ratios.items()}, {"groups": groups})
    lrs = {g["name"]: g["lr"] for g in result.param_groups(model)}
    assert lrs == pytest.approx({"head": 1e-2, "layer_1": 5e-3, "layer_0": 2.5e-3, "embeddings": 1.25e-3})


def test_param_groups_from_result_errors():
    model = tiny_bert()
    with pytest.raises(ValueError, match=r"no curve for the groups \['head', 'body'\]"):
        param_groups_from_result(hand_made_result({"group_0": 1e-3, "group_1": 1e-2}), model)
    with pytest.raises(ValueError, match="'steep' gave no suggestion"):
        param_groups_from_result(hand_made_result({"head": 1e-2, "body": 1e-3}), model, "steep")


@pytest.mark.parametrize("bad", ["heads", "Auto", ""])
def test_an_unknown_groups_name_lists_the_vocabulary(bad):
    with pytest.raises(ValueError, match=r"Unknown groups .*'auto'.*'optimizer'.*mapping.*groups=None"):
        detect_groups(tiny_bert(), bad)


def test_groups_of_the_wrong_type_is_a_type_error():
    with pytest.raises(TypeError, match="groups must be"):
        detect_groups(tiny_bert(), 3)
