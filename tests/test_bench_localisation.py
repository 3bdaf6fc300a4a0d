"""``benchmarks/bench_localisation.py``: which scenes it picks, how it summarises and writes its results, and
its ``--quick`` run end to end (held-out views, recorded curves, matched strength, ensemble at one ratio)."""

from __future__ import annotations

import json

import pytest
from benchmark_scripts import load


@pytest.fixture(scope="module")
def bench():
    return load("bench_localisation")


def test_scenes_cover_every_shape_and_two_ask_for_a_confusable_colour(bench):
    from relevance_nerf2nerf.scenes import random_scene_spec

    picked = bench.pick_scenes(6)
    assert [c.shape for c in picked] == [*bench.SHAPE_ORDER, "cube", "sphere"]
    assert (picked[0].seed, picked[0].shape) == (0, "cube")  # the demo's scene first
    assert len({c.seed for c in picked}) == 6
    for k, choice in enumerate(picked):
        colours = {o.shape: o.colour for o in random_scene_spec(choice.seed, 3).objects}
        assert colours[choice.shape] == choice.colour and choice.requested not in colours.values()
        others = [c for s, c in colours.items() if s != choice.shape]
        nearest, distance = bench._nearest_other(choice.requested, others)
        if k in (4, 5):
            assert distance < bench.CONFUSABLE_DISTANCE and choice.confusable_with == nearest
        else:
            assert distance >= bench.CONFUSABLE_DISTANCE and choice.confusable_with is None
    assert bench.pick_scenes(6) == picked  # fixed before any run


def _row(psnr, changes, reached, matched_psnr):
    per_view = {"psnr_outside_object": {"mean": psnr + 1.0}}
    return {"psnr_outside_object_after_vs_before": psnr, "ssim_outside_object_after_vs_before": 0.9,
            "psnr_whole_image_after_vs_before": psnr - 3.0, "non_target_colour_change": changes,
            "mean_non_target_colour_change": sum(changes.values()) / len(changes),
            "max_non_target_colour_change": max(changes.values()), "object_colour_error_after": 0.1,
            "target_reached": reached, "per_view": per_view, "seconds": 10.0,
            "matched": {"target_colour_error": 0.2, "psnr_outside_target_db": matched_psnr,
                        "mean_non_target_colour_change": 0.01}}  # fmt: skip


def _scene(seed, in2n, ours, maps, field):
    methods = {"IN2N (tau 0)": in2n, "ours tau=0.5": ours}
    matched = {"target_colour_error": 0.2, "methods": {m: r.pop("matched") for m, r in methods.items()}}
    ensemble = {"iqr_ratio_field": 3.5,
                "maps_2d_iou": {"3.5": {"held_out_captures": maps, "training_captures": maps / 2}},
                "field_iou_held_out": {"IN2N (tau 0)": field, "ours tau=0.5": field + 0.1}}  # fmt: skip
    return {"seed": seed, "methods": methods, "matched_strength": matched, "ensemble": ensemble}


def test_summary_counts_reached_targets_and_means_matched_figures_over_scenes(bench):
    scenes = [
        _scene(0, _row(20.0, {"a": 0.1, "b": 0.3}, True, 18.0),
               _row(24.0, {"a": 0.05, "b": 0.1}, False, 25.0), 0.4, 0.2),
        _scene(1, _row(22.0, {"c": 0.2}, True, 20.0), _row(26.0, {"c": 0.0}, True, 27.0), 0.6, 0.4),
    ]  # fmt: skip
    summary = bench.summarise(scenes)
    in2n, ours = summary["methods"]["IN2N (tau 0)"], summary["methods"]["ours tau=0.5"]
    assert in2n["psnr_outside_target_db"] == pytest.approx(21.0)
    assert in2n["psnr_outside_target_db_std_over_scenes"] == pytest.approx(2**0.5)
    assert in2n["psnr_outside_target_db_mean_of_per_view_means"] == pytest.approx(22.0)
    assert in2n["mean_non_target_colour_change"] == pytest.approx((0.2 + 0.2) / 2)  # per-scene means
    assert in2n["max_non_target_colour_change"] == pytest.approx(0.3)
    assert (in2n["target_reached"], ours["target_reached"]) == (2, 1) and ours["target_reached_scenes"] == [1]
    assert in2n["matched_strength"]["psnr_outside_target_db"] == pytest.approx(19.0)
    assert ours["matched_strength"]["psnr_outside_target_db"] == pytest.approx(26.0)
    ensemble = summary["ensemble"]
    assert ensemble["iqr_ratio_field"] == ensemble["iqr_ratio_2d"] == 3.5
    assert ensemble["maps_2d_iou"]["3.5"] == {"held_out_captures": pytest.approx(0.5),
                                             "training_captures": pytest.approx(0.25)}  # fmt: skip
    assert ensemble["field_iou_held_out"]["ours tau=0.5"] == pytest.approx(0.4)


def test_results_keep_only_entries_of_the_held_out_format(bench, tmp_path):
    path = tmp_path / "localisation.json"
    path.write_text(json.dumps({"full": {"settings": {}}, "custom": {"views": "held-out", "x": 1}}))
    bench.write_results("quick", {"views": "held-out", "y": 2}, path)
    assert json.loads(path.read_text()) == {"custom": {"views": "held-out", "x": 1},
                                            "quick": {"views": "held-out", "y": 2}}  # fmt: skip


def test_renormalisation_stretches_each_view_to_the_unit_range(bench):
    import torch

    relevance = torch.tensor([[[0.2, 0.4]], [[0.3, 0.3]]])
    assert torch.allclose(bench.renormalised(relevance), torch.tensor([[[0.0, 1.0]], [[0.0, 0.0]]]))


def test_edit_runs_take_the_resolved_iqr_ratio_and_length(bench, tmp_path):
    from method_configs.relevance_nerf2nerf import relevance_nerf2nerf_tiny

    args = bench.Args(quick=True, relevance_iqr_ratio=2.5).resolved()
    assert args.edit_iterations == args.edit_passes * args.num_views * args.edit_every
    config = bench._trainer_config(relevance_nerf2nerf_tiny.config, tmp_path, tmp_path, "run",
                                   args.edit_iterations, bench.edit_stage_flags(args))  # fmt: skip
    assert config.max_num_iterations == args.edit_iterations and config.pipeline.relevance_iqr_ratio == 2.5



def test_splatfacto_rows_are_tau_0_ours_and_ours_frozen_from_a_splat_base(bench, tmp_path):
    """The splat rows edit a splatfacto-tiny base with relevance-splatfacto-tiny: Instruct-GS2GS-style
    (tau 0), ours at tau 0.5 and ours at tau 0.5 with the Gaussians below tau frozen; their entry
    is kept apart from nerfacto's."""
    args = bench.Args(backend="splatfacto")
    assert bench.results_key(args) == "splatfacto" and bench.results_key(bench.Args()) == "full"
    assert bench.results_key(bench.Args(backend="splatfacto", quick=True)) == "splatfacto-quick"
    assert bench.results_key(bench.Args(backend="splatfacto", num_scenes=3)) == "splatfacto-custom"
    resolved = args.resolved()
    assert (resolved.num_scenes, resolved.base_iterations) == (2, 1000)
    runs = bench.edit_runs(resolved)
    assert [(r.tau, r.freeze_below) for r in runs] == [(0.0, None), (0.5, None), (0.5, 0.5)]
    assert len({r.name for r in runs}) == 3
    base, edit = bench._presets("splatfacto")
    assert (base.method_name, edit.method_name) == ("splatfacto-tiny", "relevance-splatfacto-tiny")
    config = bench._trainer_config(edit, tmp_path, tmp_path, "run", 10, bench.edit_stage_flags(
        bench.Args(backend="splatfacto", quick=True, relevance_iqr_ratio=2.5).resolved()))  # fmt: skip
    assert config.pipeline.relevance_iqr_ratio == 2.5 and config.pipeline.model.camera_optimizer.mode == "off"


@pytest.mark.slow
def test_quick_run_measures_on_held_out_views_with_curves_and_matched_strength(bench, tmp_path):
    """The --quick benchmark end to end: every record names the held-out views, each NeRF method carries a
    curve from the base's point (step 0) to the end of its edit, the matched-strength comparison reads every
    method at the weaker method's best level, and the plot is written beside the JSON."""
    results = tmp_path / "results" / "localisation.json"
    result = bench.main(bench.Args(quick=True, results=results))
    written = json.loads(results.read_text())["quick"]
    assert written["views"] == "held-out" and written["iqr_ratio_2d"] == written["iqr_ratio_field"] == 3.5
    assert (results.parent / "localisation_quick.png").stat().st_size > 0
    scene = result["scenes"][0]
    assert scene["held_out_views"] == ["frame_00004.png", "frame_00005.png"]
    nerf_methods = [m for m in scene["methods"] if m != bench.IP2P]
    assert nerf_methods == ["IN2N (tau 0)", "ours tau=0.5", "ours tau=0.3"]
    for method in nerf_methods:
        record = scene["methods"][method]
        assert isinstance(record["target_reached"], bool)
        assert all(isinstance(p["target_reached"], bool) for p in record["curve"])
        reached = [p["view_updates"] / 4 for p in record["curve"] if p["target_reached"]]  # 4 training views
        assert record["updates_per_view_first_reached"] == (reached[0] if reached else None)
        steps = [p["step"] for p in record["curve"]]
        assert steps[0] == 0 and steps[-1] == result["settings"]["edit_iterations"] and steps == sorted(steps)
        assert record["curve"][0]["psnr_outside_target_db"] == 100.0  # the base itself
        assert set(record["curve"][-1]["non_target_colour_change"]) == set(record["non_target_colour_change"])
        assert record["curve"][-1]["psnr_outside_target_db"] == pytest.approx(
            record["psnr_outside_object_after_vs_before"]
        )
    matched = scene["matched_strength"]
    assert matched["target_colour_error"] == max(matched["best_levels"].values())
    assert set(matched["methods"]) == set(nerf_methods)
    assert set(scene["ensemble"]["maps_2d_iou"]) == {"3.5", "1.5"}
    assert set(scene["ensemble"]["field_iou_held_out_renormalised"]) == set(nerf_methods)
