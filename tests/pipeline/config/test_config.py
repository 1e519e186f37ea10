"""The config tree: presets build, overrides are strict and typed, errors name the valid options."""

import pytest

from pipeline.config import (PRESETS, Config, apply_overrides, flatten, from_dict, get_preset,
                             load_config, parse_overrides, to_dict)


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_builds_and_round_trips_through_dict(name):
    cfg = get_preset(name)
    assert cfg.name == name
    assert from_dict(Config, to_dict(cfg)) == cfg


def test_dotted_overrides_are_typed():
    cfg = load_config("debug", ["model.backbone=x3d_m", "model.search_space=3", "train.lr=0.05",
                                "data.flip=false", "runtime.num_workers=2"])
    assert cfg.model.backbone == "x3d_m"
    assert cfg.model.search_space == 3 and isinstance(cfg.model.search_space, int)
    assert cfg.train.lr == pytest.approx(0.05)
    assert cfg.data.flip is False
    assert cfg.runtime.num_workers == 2


def test_overrides_accept_typed_values_as_tune_passes_them():
    cfg = apply_overrides(get_preset("debug"), {"train.lambda_e": 0.3, "model.search_space": 4})
    assert cfg.train.lambda_e == pytest.approx(0.3) and cfg.model.search_space == 4


def test_bad_literal_names_the_valid_choices():
    with pytest.raises(ValueError, match="r2plus1d_18.*i3d_r50.*x3d_m"):
        load_config("debug", ["model.backbone=resnet50"])


def test_bad_search_space_is_rejected():
    with pytest.raises(ValueError, match="search_space"):
        load_config("debug", ["model.search_space=5"])
    with pytest.raises(ValueError, match="search_space"):
        load_config("debug", ["model.search_space=0"])


def test_unknown_key_names_the_valid_keys():
    with pytest.raises(ValueError, match="model.backbone"):
        load_config("debug", ["model.backbon=x3d_m"])
    with pytest.raises(ValueError, match="valid keys under the root"):
        load_config("debug", ["optim.lr=1"])


def test_setting_a_whole_section_is_rejected():
    with pytest.raises(ValueError, match="is a section"):
        load_config("debug", ["model=x3d_m"])


def test_malformed_values_and_items_are_rejected():
    with pytest.raises(ValueError, match="not a valid float"):
        load_config("debug", ["train.lr=fast"])
    with pytest.raises(ValueError, match="not a valid int"):
        load_config("debug", ["train.epochs=2.5"])
    with pytest.raises(ValueError, match="key.path=value"):
        parse_overrides(["train.lr"])


def test_unknown_preset_names_the_presets():
    with pytest.raises(ValueError, match="debug"):
        get_preset("tiny")


def test_section_validation_runs_on_construction():
    with pytest.raises(ValueError, match="data.jitter_short_side_min"):
        load_config("debug", ["data.crop_size=64"])


def test_flatten_gives_dotted_leaves():
    flat = flatten(get_preset("debug"))
    assert flat["model.backbone"] == "r2plus1d_18"
    assert "train.lambda_e" in flat and not any(isinstance(v, dict) for v in flat.values())


def test_a_config_saved_before_a_field_existed_gets_its_legacy_value():
    """Checkpoints written before `model.gate_input` existed have "pool" gates: their saved config,
    which lacks the key, must rebuild that model, not the new default's."""
    saved = to_dict(get_preset("demo"))
    del saved["model"]["gate_input"]
    assert get_preset("demo").model.gate_input == "pool_motion"
    assert from_dict(Config, saved).model.gate_input == "pool"
    assert from_dict(Config, to_dict(get_preset("demo"))).model.gate_input == "pool_motion"
