"""``benchmarks/bench_localisation.py``: which scenes it picks and how it summarises (the runs themselves are
the benchmark; ``--quick`` is its CI-sized check)."""

from __future__ import annotations

import pytest
from benchmark_scripts import load


@pytest.fixture(scope="module")
def bench():
    return load("bench_localisation")


def test_scenes_cover_every_shape_and_ask_for_a_colour_no_object_has(bench):
    from relevance_nerf2nerf.scenes import random_scene_spec

    picked = bench.pick_scenes(4)
    assert [shape for _, shape, _, _ in picked] == list(bench.SHAPE_ORDER)
    assert picked[0][:2] == (0, "cube")  # the demo's scene and instruction first
    for seed, shape, old, new in picked:
        colours = {o.shape: o.colour for o in random_scene_spec(seed, 3).objects}
        assert colours[shape] == old and new not in colours.values()


def test_summary_means_over_scenes_and_pools_every_non_target_object(bench):
    def row(psnr, changes, hit, iou=None):
        entry = {"psnr_outside_object_after_vs_before": psnr, "ssim_outside_object_after_vs_before": 0.9,
                 "non_target_colour_change": changes, "edit_hit": hit, "object_colour_error_after": 0.1,
                 "clip_directional_similarity": "unavailable", "seconds": 10.0}  # fmt: skip
        if iou is not None:
            entry["relevance_field_iou_train_views_tau0.5"] = iou
        return entry

    scenes = [
        {"methods": {"IN2N (tau 0)": row(20.0, {"a": 0.1, "b": 0.3}, True),
                     "ours tau=0.5": row(24.0, {"a": 0.05, "b": 0.1}, False, 0.5)},
         "relevance_iou_2d_maps_tau0.5": 0.2},
        {"methods": {"IN2N (tau 0)": row(22.0, {"c": 0.2}, False),
                     "ours tau=0.5": row(26.0, {"c": 0.0}, True, 0.3)},
         "relevance_iou_2d_maps_tau0.5": 0.4},
    ]  # fmt: skip
    summary = bench.summarise(scenes)
    assert summary["IN2N (tau 0)"]["psnr_outside_target_db"] == pytest.approx(21.0)
    assert summary["IN2N (tau 0)"]["mean_non_target_colour_change"] == pytest.approx(0.2)  # (0.1+0.3+0.2)/3
    assert summary["IN2N (tau 0)"]["max_non_target_colour_change"] == pytest.approx(0.3)
    assert summary["IN2N (tau 0)"]["target_hit_rate"] == pytest.approx(0.5)
    assert summary["IN2N (tau 0)"]["relevance_field_iou_tau0.5"] is None
    assert summary["ours tau=0.5"]["relevance_field_iou_tau0.5"] == pytest.approx(0.4)
    assert summary["ours tau=0.5"]["clip_directional_similarity"] == "unavailable"
    assert summary["2D relevance maps"]["relevance_iou_tau0.5"] == pytest.approx(0.3)


def test_edit_runs_take_the_demos_schedule_and_iqr_ratio(bench, tmp_path):
    """Each edit run's config: learning rates decaying over its own iterations, the resolved IQR ratio."""
    from method_configs.relevance_nerf2nerf import relevance_nerf2nerf_tiny

    args = bench.Args(edit_iterations=37, relevance_iqr_ratio=2.5).resolved()
    config = bench._trainer_config(relevance_nerf2nerf_tiny.config, tmp_path, tmp_path, "run", 37,
                                   bench.edit_stage_flags(args))  # fmt: skip
    assert config.max_num_iterations == 37 and config.pipeline.relevance_iqr_ratio == 2.5
    for group in ("fields", "proposal_networks", "relevance"):
        assert config.optimizers[group]["scheduler"].max_steps == 37
    assert relevance_nerf2nerf_tiny.config.optimizers["fields"]["scheduler"].max_steps != 37  # preset kept
