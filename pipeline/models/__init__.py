"""Pure-PyTorch model core: dynamic convolution, gates, cheap ops, conversion, cost, the VA-RED² model."""

from pipeline.models.cheap_ops import ChannelCheapOp, TemporalCheapOp
from pipeline.models.convert import (clear_policy, convert_to_dynamic, default_dynamic_filter,
                                     dynamic_layers, force_policy, set_execution)
from pipeline.models.cost import (conv_macs, dynamic_layer_macs, gflops_summary, linear_macs, param_count,
                                  static_macs)
from pipeline.models.dynamic_conv import (DynamicConv2d, DynamicConv3d, DynamicConvBase, LayerRecord,
                                          channel_index, channel_ratios, temporal_factors, temporal_index)
from pipeline.models.gate import GateValues, SoftModulationGate
from pipeline.models.build import build_model
from pipeline.models.output import VaredOutput
from pipeline.models.vared import VaredModel

__all__ = [
    "ChannelCheapOp", "DynamicConv2d", "DynamicConv3d", "DynamicConvBase", "GateValues", "LayerRecord",
    "SoftModulationGate", "TemporalCheapOp", "VaredModel", "VaredOutput", "build_model", "channel_index",
    "channel_ratios", "clear_policy", "conv_macs", "convert_to_dynamic", "default_dynamic_filter",
    "dynamic_layer_macs", "dynamic_layers", "force_policy", "gflops_summary", "linear_macs", "param_count",
    "set_execution", "static_macs", "temporal_factors", "temporal_index",
]
