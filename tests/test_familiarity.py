"""core.familiarity: the feature-space check that a video looks like the training videos, its
calibration arithmetic, its storage beside the weights, and the Predictor's warning."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from core import familiarity as fam
from core.checkpoint import FAMILIARITY, load_checkpoint, load_familiarity, save_checkpoint, save_familiarity
from core.predict import UNFAMILIAR, Predictor


def test_scores_are_the_mean_of_the_k_nearest_cosines():
    ref = fam.unit(np.eye(6)[:, :6] + 0.0)  # six orthogonal unit vectors
    x = fam.unit(np.array([1.0, 1.0, 0, 0, 0, 0]))
    # cosines 0.707, 0.707, 0, 0, 0, 0: the top 5 average (0.707 * 2) / 5
    assert fam.scores(ref, x)[0] == pytest.approx(2 * 2**-0.5 / 5)
    own = fam.scores(ref, ref, leave_self_out=True)  # each against the other five: all 0
    assert np.allclose(own, 0.0)
    near = np.vstack([ref, ref[0]])
    assert fam.scores(near, ref[:1])[0] == pytest.approx(2 / 5)  # itself twice (1, 1), then three zeros


def test_fold_margin_sets_the_held_out_5th_percentile_and_counts_the_others():
    rng = np.random.default_rng(0)
    centre = fam.unit(rng.normal(size=16))
    train = fam.unit(centre + 0.2 * rng.normal(size=(200, 16)))
    held = fam.unit(centre + 0.3 * rng.normal(size=(100, 16)))
    others = fam.unit(-centre + 0.3 * rng.normal(size=(10, 16)))  # the opposite direction: far from the training cluster
    out = fam.fold_margin(train, held, others)
    held_scores = fam.scores(train, held)
    assert out["held_out_p5"] == pytest.approx(np.percentile(held_scores, 5))
    assert (held_scores < out["held_out_p5"]).mean() == pytest.approx(0.05, abs=0.011)
    assert out["margin"] == pytest.approx(out["train_median"] - out["held_out_p5"]) and out["margin"] > 0
    assert out["others"] == 10 and out["others_flagged"] == 10
    assert out["held_out_scores"] == [round(float(v), 4) for v in held_scores]


def test_out_of_fold_judges_each_fold_with_the_other_folds_margin():
    folds = [{"margin": 0.1, "train_median": 0.9, "held_out_scores": [0.85, 0.75], "others_scores": [0.5]},
             {"margin": 0.3, "train_median": 0.9, "held_out_scores": [0.65, 0.55], "others_scores": [0.7]}]
    # fold 0 with margin 0.3: threshold 0.6 (0.85, 0.75 pass; 0.5 flagged); fold 1 with 0.1: threshold 0.8
    got = fam.out_of_fold(folds)
    assert got == {"held_out_flagged": 2, "held_out_videos": 4, "others_flagged": 2, "others_videos": 2}


def test_reference_is_tied_to_the_save_it_was_made_for(tiny_checkpoint, tmp_path):
    folder = tmp_path / "ck"
    shutil.copytree(tiny_checkpoint, folder)
    reference = fam.unit(np.random.default_rng(1).normal(size=(4, 8))).astype(np.float32)
    save_familiarity(folder, reference, 0.5, {"margin": 0.2})
    got, threshold, calibration = load_familiarity(folder)
    assert np.array_equal(got, reference) and threshold == 0.5 and calibration == {"margin": 0.2}
    loaded = load_checkpoint(folder)
    save_checkpoint(folder, loaded.model, loaded.clip_cfg, loaded.class_names)  # new weights: a new save
    assert (folder / FAMILIARITY).is_file() and load_familiarity(folder) is None  # stale: ignored
    assert load_familiarity(tiny_checkpoint) is None  # none written


@pytest.mark.parametrize("familiar", [True, False])
def test_predictor_says_when_a_video_does_not_look_like_the_training_videos(tiny_checkpoint, moving_square,
                                                                           tmp_path, familiar):
    folder = tmp_path / "ck"
    shutil.copytree(tiny_checkpoint, folder)
    plain = Predictor(folder, device="cpu")
    assert plain.predict(moving_square).familiarity is None  # no reference: no claim either way
    feature = _video_feature(plain, moving_square)
    if familiar:  # the reference holds this very video (and near copies)
        reference = np.stack([feature] * 5)
    else:  # only directions orthogonal to it
        basis = np.linalg.svd(feature[None])[2][1:6]
        reference = fam.unit(basis)
    save_familiarity(folder, reference, 0.9, {"margin": 0.1})
    result = Predictor(folder, device="cpu").predict(moving_square)
    assert result.familiarity["familiar"] is familiar and result.familiarity["threshold"] == 0.9
    assert result.familiarity["score"] == pytest.approx(1.0 if familiar else 0.0, abs=1e-4)
    assert (result.notes[0] == UNFAMILIAR) is (not familiar)
    assert result.to_dict()["familiarity"] == result.familiarity


def _video_feature(predictor, video) -> np.ndarray:
    from core.data.dataset import load_test_clips

    clips, _, _ = load_test_clips(video, predictor.clip_cfg)
    with torch.inference_mode():
        return fam.video_feature(predictor.checkpoint.model.eval()(clips).features)
