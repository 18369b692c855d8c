"""The deployment actors' payloads: each stage's options plus the deployment it works on, and the launcher's."""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args

from pydantic import AfterValidator, Field, model_validator

from actors.platform.base import Payload
from actors.platform.references import ExperimentId, RecordId

__all__ = ["MAX_OPSET", "MAX_PRUNE_AMOUNT", "MIN_OPSET", "OPSET_FLOOR_REASON", "BenchmarkModels", "BenchmarkOptions", "DeployExperiment",
           "DeployOptions", "ExportOnnx", "ExportOptions", "OptimizeModel", "OptimizeOptions", "QuantizeModel",
           "QuantizeOptions", "Target"]

# pipeline.deploy's limits, repeated so that a bad value is refused on send without importing torch
# (a test checks that they still equal the pipeline's).
MIN_OPSET, MAX_OPSET, MAX_PRUNE_AMOUNT = 13, 23, 0.95
OPSET_FLOOR_REASON = ("opsets below 13 cannot carry the static INT8 variant's per-channel scales (QuantizeLinear/"
                      "DequantizeLinear take an axis from opset 13 on); export at 13..23")


def _unique(values: list[Any]) -> list[Any]:
    if len(set(values)) != len(values):
        raise ValueError("a value is listed twice")
    return values


WindowCap = Annotated[int | None, Field(ge=1, le=100_000)]  # at most this many windows of the split (None: all)
Method = Literal["dynamic_int8", "static_int8", "fp16"]
Methods = Annotated[list[Method], AfterValidator(_unique)]
BatchSizes = Annotated[list[Annotated[int, Field(ge=1, le=256)]], AfterValidator(_unique)]
# Every variant a deployment's stages can make.
Variant = Literal["torch_fp32", "onnx_fp32", "torch_pruned", "torch_fused", "torch_dynamic_int8", "onnx_static_int8",
                  "onnx_fp16"]


def _opset_floor(value: int | None) -> int | None:
    if value is not None and value < MIN_OPSET:
        raise ValueError(f"unsupported opset {value}: {OPSET_FLOOR_REASON}")
    return value


class ExportOptions(Payload):
    """ONNX export: opset (None: the exporter's own), parity tolerance on logits, windows verified."""

    opset: Annotated[int | None, Field(le=MAX_OPSET), AfterValidator(_opset_floor)] = None
    tolerance: float = Field(default=1e-4, ge=0.0, le=1.0)
    max_windows: int = Field(default=256, ge=1, le=4096)


class OptimizeOptions(Payload):
    """Pruning (``prune_method`` None: none) then Conv-BN fusion, judged on the validation windows."""

    prune_method: Literal["l1_unstructured", "random_unstructured", "ln_structured"] | None = "l1_unstructured"
    amount: float = Field(default=0.3, ge=0.0, le=MAX_PRUNE_AMOUNT)
    fuse: bool = True
    seed: int = Field(default=0, ge=0, le=2**31 - 1)
    max_windows: WindowCap = None

    @model_validator(mode="after")
    def _does_something(self) -> OptimizeOptions:
        if self.prune_method is None and not self.fuse:
            raise ValueError("neither pruning nor fusion: the stage would do nothing")
        return self


class QuantizeOptions(Payload):
    """Which quantisations, per-channel static weights, how many training windows calibrate."""

    methods: Methods = Field(default_factory=lambda: list(get_args(Method)), min_length=1)
    per_channel: bool = True
    calibration_windows: int = Field(default=256, ge=1, le=4096)
    max_windows: WindowCap = None


class BenchmarkOptions(Payload):
    """Batch sizes, warm-up and timed runs, threads, on the test windows; ``model_types``: only these
    variants (None: all); the FP32 original is always measured too, as the agreement reference."""

    model_types: Annotated[list[Variant], AfterValidator(_unique)] | None = Field(None, min_length=1)
    batch_sizes: BatchSizes = Field(default_factory=lambda: [1, 8, 32], min_length=1, max_length=6)
    warmup: int = Field(default=3, ge=0, le=100)
    runs: int = Field(default=30, ge=1, le=1000)
    threads: int = Field(default=1, ge=1, le=64)
    max_windows: WindowCap = None


class Target(Payload):
    """Which deployment a stage works on; neither id in a pipeline, where the piped summary says."""

    deployment_id: RecordId | None = None
    experiment_id: ExperimentId | None = None

    @model_validator(mode="after")
    def _one_target(self) -> Target:
        if self.deployment_id and self.experiment_id:
            raise ValueError("give deployment_id or experiment_id, not both")
        return self


# Each stage's payload: its options plus the deployment it works on.
ExportOnnx, OptimizeModel, QuantizeModel, BenchmarkModels = (
    type(f"{options.__name__.removesuffix('Options')}Stage", (options, Target), {"__doc__": options.__doc__})
    for options in (ExportOptions, OptimizeOptions, QuantizeOptions, BenchmarkOptions))


class DeployOptions(Payload):
    """Every stage's options; with their defaults filled in, they are the config a deployment is keyed by."""

    export: ExportOptions = Field(default_factory=lambda: ExportOptions())
    optimize: OptimizeOptions = Field(default_factory=lambda: OptimizeOptions())
    quantize: QuantizeOptions = Field(default_factory=lambda: QuantizeOptions())
    benchmark: BenchmarkOptions = Field(default_factory=lambda: BenchmarkOptions())


class DeployExperiment(Payload):
    """Payload of ``deploy_experiment``: a completed deep-model experiment and the stages' options."""

    experiment_id: ExperimentId
    options: DeployOptions = Field(default_factory=DeployOptions)
