"""ST-MANet, one module per section of the paper."""
from .configs import STMANetConfig, TABLE4_ROWS, config_by_name, variant_names
from .losses import LossTerms, stmanet_loss
from .stmanet import STMANet, STMANetOutput, build_model, forward_flops

__all__ = [
    "STMANetConfig",
    "TABLE4_ROWS",
    "config_by_name",
    "variant_names",
    "LossTerms",
    "stmanet_loss",
    "STMANet",
    "STMANetOutput",
    "build_model",
    "forward_flops",
]
