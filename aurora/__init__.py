"""aurora-bench: benchmark and ablate parameter-efficient tuning of vision-language models.

>>> import aurora
>>> method = aurora.create_method("lora", r=8)
>>> model = method.apply(model)          # freezes what it does not train
>>> aurora.param_report(model)           # counted by the harness, shared tensors once
"""

from aurora.api import (
    Method,
    MethodConfig,
    ParamReport,
    TargetingError,
    create_method,
    list_methods,
    param_report,
    register_method,
)
from aurora.registry import UnknownNameError

__all__ = [
    "Method",
    "MethodConfig",
    "ParamReport",
    "TargetingError",
    "UnknownNameError",
    "create_method",
    "list_methods",
    "param_report",
    "register_method",
]
__version__ = "0.1.0"
