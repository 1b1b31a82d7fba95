"""The benchmark's evidence per optimizer family: a note in the result where the default rule was not measured."""

import pytest
import torch

from hf_lrfind import LRFinderConfig
from hf_lrfind.core.engine import range_test
from hf_lrfind.core.evidence import EVIDENCE, evidence_for, optimizer_warning
from tests.test_engine import make_step, tiny_model

BOWL = [1.0 + 0.05 * abs(i - 25) for i in range(40)] * 3  # a curve that passes every check (and steps past its end)


def sweep_with(optimizer_class, **kwargs):
    model = tiny_model()
    opt = optimizer_class(model.parameters(), lr=0.1, **kwargs)
    step, _ = make_step(model, opt, losses=BOWL)
    return range_test(step, model, opt, LRFinderConfig(num_steps=40, diverge_threshold=None), progress=False)


def test_adamw_is_measured_and_carries_no_note():
    result = sweep_with(torch.optim.AdamW)
    assert result.metadata["optimizer"] == "AdamW"
    assert result.metadata["optimizer_warning"] is None and result.metadata["warnings"] == []


def test_an_unmeasured_optimizer_gets_a_note_with_the_measured_evidence(caplog):
    with caplog.at_level("WARNING", logger="hf_lrfind.core.engine"):
        result = sweep_with(torch.optim.RMSprop)
    (note,) = result.metadata["warnings"]
    assert note == result.metadata["optimizer_warning"] and note in caplog.text
    assert note.startswith("The suggestion benchmark has not measured RMSprop")
    for family in EVIDENCE:
        assert family.measured in note
    summary = result.summary()
    assert "its curve passed the checks" in summary  # the note is not about the curve ...
    assert f"note: {note}" in summary  # ... and the summary still shows it


def test_accelerates_wrapper_is_looked_through():
    from accelerate import Accelerator

    model = tiny_model()
    wrapped = Accelerator(cpu=True).prepare_optimizer(torch.optim.AdamW(model.parameters()))
    assert evidence_for(wrapped)[0] == "AdamW" and optimizer_warning(wrapped) is None


def test_adafactor_with_its_own_step_size_is_refused_before_any_step():
    from transformers import Adafactor

    model = tiny_model()
    opt = Adafactor(model.parameters())  # transformers' defaults: relative_step=True, lr=None
    step, calls = make_step(model, opt, losses=BOWL)
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(ValueError, match="relative_step=False, scale_parameter=False, warmup_init=False"):
        range_test(step, model, opt, LRFinderConfig(num_steps=40), progress=False)
    assert calls == [] and all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    opt = Adafactor(model.parameters(), lr=1e-3, relative_step=False, scale_parameter=False, warmup_init=False)
    step, _ = make_step(model, opt, losses=BOWL)
    range_test(step, model, opt, LRFinderConfig(num_steps=40, diverge_threshold=None), progress=False)


def test_a_measured_family_where_the_rule_needs_a_caveat_says_what_was_measured():
    class Lion(torch.optim.SGD):  # any optimizer class named Lion belongs to the Lion family
        pass

    result = sweep_with(Lion)
    (note,) = result.metadata["warnings"]
    lion = next(e for e in EVIDENCE if e.family == "Lion")
    assert (
        lion.warn
        and note == f"The default rule was measured with Lion (Lion): {lion.measured}. See docs/suggestions.md."
    )


def test_adafactor_is_measured_only_as_the_trainer_builds_it():
    from transformers import Adafactor

    model = tiny_model()
    as_trainer = Adafactor(model.parameters(), lr=1e-3, relative_step=False, scale_parameter=False, warmup_init=False)
    assert evidence_for(as_trainer)[1].family == "Adafactor"
    assert optimizer_warning(as_trainer).startswith("The default rule was measured with Adafactor (Adafactor)")
    scaled = Adafactor(model.parameters(), lr=1e-3, relative_step=False, scale_parameter=True, warmup_init=False)
    assert evidence_for(scaled)[1] is None  # scale_parameter changes what its lr means: not what was measured
    assert optimizer_warning(scaled).startswith("The suggestion benchmark has not measured Adafactor")
