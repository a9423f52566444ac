"""The arrow-of-time warm-up (core/pretext.py): which clips it reverses, its loss by hand, the
schedule's restart, that it learns the direction and then the classes, and that a run stopped in
the middle of it resumes as if uninterrupted."""
from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from core.data.synthetic import write_rhythm_set
from core.model import build_model, config_by_name
from core.model.stmanet import STMANetOutput
from core.pretext import ArrowOfTime
from core.train import TrainConfig, lr_at, train
from test_train import assert_same_weights, stopped_then_resumed, tiny_config, weights

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def falling_data(tmp_path_factory):
    """Squares that only fall, fast or slow: played backwards they rise, so the direction is learnable."""
    return write_rhythm_set(tmp_path_factory.mktemp("falling"), 12, 6, falling=True)


def test_batch_reverses_exactly_the_clips_it_labels_backward():
    arrow = ArrowOfTime(8, torch.device("cpu"), seed=5)
    clips = torch.randn(16, 3, 6, 4, 4)
    reversed_clips, backward = arrow.batch(clips, epoch=2, step=3)
    assert backward.dtype == torch.long and 0 < int(backward.sum()) < 16  # some of each (for this draw)
    for clip, out, flag in zip(clips, reversed_clips, backward):
        torch.testing.assert_close(out, clip.flip(1) if flag else clip)  # dim 1 of a clip is time
    again = arrow.batch(clips, epoch=2, step=3)[1]
    assert torch.equal(again, backward)  # (seed, epoch, step) alone: a resumed run reverses the same clips
    assert not torch.equal(arrow.batch(clips, epoch=2, step=4)[1], backward)


def test_loss_is_the_direction_heads_cross_entropy_plus_the_diversity_terms():
    torch.manual_seed(0)
    cfg = config_by_name("stmanet_r10", num_classes=3, base_width=4, diversity_form="received",
                         diversity_grid="first", stem_temporal_kernel=3)
    model = build_model(cfg).train()
    out: STMANetOutput = model(torch.randn(4, 3, 8, 32, 32))
    arrow = ArrowOfTime(model.classifier.in_features, torch.device("cpu"), seed=0)
    backward = torch.tensor([0, 1, 1, 0])
    terms, logits = arrow.loss(out, backward, cfg, diversity_weight=0.5)
    by_hand = torch.nn.functional.cross_entropy(arrow.head(out.features), backward)
    torch.testing.assert_close(terms.ce, by_hand)
    torch.testing.assert_close(terms.total, by_hand + 0.5 * (cfg.lambda_spatial * terms.spatial
                                                              + cfg.lambda_temporal * terms.temporal))
    assert float(terms.stage_heads) == 0.0 and logits.shape == (4, 2)  # class heads get no direction labels
    terms.total.backward()
    assert arrow.head.weight.grad is not None and model.classifier.weight.grad is None


def test_schedule_runs_once_over_the_pretext_and_again_over_the_labelled_epochs():
    cfg = TrainConfig(epochs=10, pretext_epochs=4, lr=0.1, lr_schedule="cosine", warmup_epochs=1)
    assert lr_at(cfg, 0.5) == pytest.approx(0.1 * (0.5 + 1e-3))  # warm-up of the pretext
    assert lr_at(cfg, 2.5) == pytest.approx(0.05 * (1 + math.cos(math.pi * 1.5 / 3)))  # cosine over epochs 1-4
    assert lr_at(cfg, 4.5) == pytest.approx(0.1 * (0.5 + 1e-3))  # warm-up again when the labels begin
    assert lr_at(cfg, 7.0) == pytest.approx(0.05 * (1 + math.cos(math.pi * 2 / 5)))
    with pytest.raises(ValueError, match="pretext_epochs"):
        TrainConfig(epochs=4, pretext_epochs=4)


def test_learns_the_direction_then_trains_on_the_labels(falling_data, tmp_path):
    cfg = tiny_config(falling_data, tmp_path / "run", epochs=10, pretext_epochs=8, max_steps_per_epoch=None,
                      optimizer="adamw", lr=1e-2, dropout=0.0, val_every=1, max_val_windows=2)
    result = train(cfg)
    assert result.error is None
    pretext, labelled = result.history[:8], result.history[8:]
    assert all("pretext_acc" in h and "train_acc" not in h and "val_acc" not in h for h in pretext)
    assert all("train_acc" in h and "val_acc" in h for h in labelled)
    # chance 0.5: forward falls, backward rises. One epoch is 24 clips, so its accuracy moves by a
    # clip or two between CPUs (0.79-0.83 here); over the last four epochs (96 draws) 0.7 is far
    # above chance (p < 1e-3 for a coin) and below what the learning run reaches on every machine
    late = [h["pretext_acc"] for h in pretext[-4:]]
    assert sum(late) / len(late) >= 0.7, pretext
    assert pretext[0]["pretext_acc"] < 0.6, pretext


@pytest.mark.parametrize("stop_at", [(2, 1), (3, 1)], ids=["in the pretext", "just after it"])
def test_stop_then_resume_equals_uninterrupted(falling_data, tmp_path, stop_at):
    cfg = tiny_config(falling_data, tmp_path / "whole", pretext_epochs=2)
    whole = train(cfg)
    assert whole.error is None and len(whole.history) == 4
    expected_phase = "pretext" if stop_at[0] <= 2 else "labels"
    parts = stopped_then_resumed(cfg, tmp_path / "parts", stop_at,
                                 check=lambda event: event["phase"] == expected_phase or pytest.fail(str(event)))
    assert_same_weights(weights(parts), weights(tmp_path / "whole"))
    plain = train(dataclasses.replace(cfg, run_dir=str(tmp_path / "plain"), pretext_epochs=0))
    assert plain.error is None
    assert any(not torch.equal(a, b) for a, b in zip(weights(tmp_path / "whole").values(),
                                                       weights(tmp_path / "plain").values()))
