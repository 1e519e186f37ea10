"""Every choice list that exists twice (a config `Literal` and the code that builds from it) says
the same thing: a new backbone, mode or option must be added to both or this fails."""

from typing import get_args

import pytest

from pipeline.config import model as model_config
from pipeline.config import tune as tune_config
from pipeline.models.backbones import BACKBONES
from pipeline.models.baselines import BASELINES
from pipeline.models.dynamic_conv import MODES, SEARCH_SPACES
from pipeline.models.gate import GATE_INPUTS, GATE_NORMS
from pipeline.models.padding import PADDING_MODES
from pipeline.models.vared import DYNAMIC_CHOICES, GATE_TRAININGS


@pytest.mark.parametrize("literal, code", [
    (model_config.Backbone, tuple(BACKBONES)),
    (model_config.DynamicMode, DYNAMIC_CHOICES),
    (model_config.GateTraining, GATE_TRAININGS),
    (model_config.GateNorm, GATE_NORMS),
    (model_config.GateInput, GATE_INPUTS),
    (model_config.TemporalPadding, PADDING_MODES),
    (model_config.Baseline, ("none", *BASELINES)),
])
def test_config_literals_match_the_model_code(literal, code):
    assert set(get_args(literal)) == set(code)


def test_dynamic_modes_and_search_spaces_agree():
    assert set(DYNAMIC_CHOICES) == set(MODES) | {"none"}
    assert tuple(tune_config.TuneConfig().search_spaces) == SEARCH_SPACES
    for s in SEARCH_SPACES:
        model_config.ModelConfig(search_space=s)
    with pytest.raises(ValueError, match="choose one of 2, 3, 4"):
        model_config.ModelConfig(search_space=max(SEARCH_SPACES) + 1)
