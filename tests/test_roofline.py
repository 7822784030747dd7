"""GPU presets: the roofline GPU-hour estimate (metaprompt/roofline.py) and the strategy a preset names."""

from __future__ import annotations

import pytest

from metaprompt.__main__ import main
from metaprompt.pipeline import Pipeline, PipelineConfig, strategy_settings
from metaprompt.roofline import GPUS, RooflineCosts, backbone_sizes, device_count


def test_backbone_sizes_count_a_mixtures_routed_experts_only():
    active, weight_bytes = backbone_sizes("llama-3.1-8b")
    assert 7.9e9 < active < 8.1e9 and weight_bytes == pytest.approx(2 * active)  # dense, bf16
    active, weight_bytes = backbone_sizes("gpt-oss-20b")  # 32 experts, 4 per token
    assert 3.5e9 < active < 4.5e9 and 19e9 < weight_bytes / 2 < 22.5e9


def test_roofline_unit_costs():
    one = RooflineCosts(GPUS["h100"], active_params=8e9, weight_bytes=16e9)
    # a step: 4 N FLOPs per row and soft-prompt token at 35% of 989 TFLOP/s
    assert one.train_step_s(8, 400, True, 100) == pytest.approx(4 * 8e9 * 8 * 500 / (989e12 * 0.35))
    assert one.decode_token_s(16) == pytest.approx(16e9 / (3.35e12 * 0.6) / 16)  # weights read once per step
    zero3 = RooflineCosts(GPUS["h100"], active_params=8e9, weight_bytes=16e9, devices=8)
    gathered = 16e9 * 7 / 8 / (450e9 * 0.6)  # every step gathers the other ranks' shards over NVLink
    assert zero3.decode_token_s(16) == pytest.approx(gathered / (16 * 8))
    assert zero3.train_step_s(8, 400, True, 100) == pytest.approx(
        max(one.train_step_s(8, 400, True, 100) / 8, 2 * gathered)
    )
    with pytest.raises(ValueError, match=r"--gpu 'v100': choose from h100, h200, a100"):
        RooflineCosts.for_backbone("llama-3.1-8b", "v100")
    assert (device_count("auto"), device_count(2), device_count("0,1,2"), device_count(-1)) == (8, 2, 3, 8)


def test_a_strategy_yaml_reaches_every_run_and_its_absence_changes_nothing(tmp_path):
    zero3 = strategy_settings("deepspeed_zero3")
    assert zero3["strategy"]["init_args"]["stage"] == 3 and zero3["devices"] == "auto"
    assert strategy_settings("strategies/deepspeed_zero3.yaml") == zero3 and strategy_settings(None) == {}
    with pytest.raises(ValueError, match=r"strategy 'zero9': no such file \(shipped: ddp, deepspeed_zero2"):
        strategy_settings("zero9")
    plain = Pipeline(PipelineConfig(output_dir=str(tmp_path), backbone="tiny-llama")).run_shape("x", tmp_path)
    assert "strategy" not in plain and plain["devices"] == 1  # one-device runs keep their record keys
    sharded = PipelineConfig(output_dir=str(tmp_path), backbone="tiny-llama", strategy="deepspeed_zero3")
    shape = Pipeline(sharded).run_shape("x", tmp_path)
    assert shape["strategy"] == zero3["strategy"] and shape["devices"] == "auto"


@pytest.mark.slow
def test_the_gpu_presets_estimate_gpu_hours_and_refuse_a_time_budget(tmp_path, data_root, capsys):
    preset = "lightning_configs/reproduce/gpt-oss-20b.yaml"
    argv = ["reproduce", "-c", preset, "--pipeline.output_dir", str(tmp_path / "out"),
            "--pipeline.data.root", str(data_root)]  # fmt: skip
    assert main([*argv, "--time-budget", "30"]) == 2  # each process would stop on its own clock
    assert "--time-budget / max_minutes is for one-process runs" in capsys.readouterr().err
    assert main([*argv, "--estimate", "--gpu", "h100"]) == 0
    out = capsys.readouterr().out
    assert "roofline estimate (no GPU measurement): 8 x NVIDIA H100" in out and "| **total** | 303 |" in out
    assert " GPU-hours." in out and not (tmp_path / "out").exists()
