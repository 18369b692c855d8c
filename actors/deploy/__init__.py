"""Deployment actors (``cpu_processing``): export, optimise, quantise and benchmark a trained model.

``deploy_experiment`` (``launcher``) records a deployment and sends the pipeline export -> optimize -> quantize
-> benchmark (``stages``). Dramatiq passes each stage's summary to the next as its last positional argument: the
deployment is found there. A stage also runs alone, on a ``deployment_id`` or an ``experiment_id`` (then a
deployment of its own). A failing stage records which stage and why before raising; the pipeline stops there
(``run_stage``). The last stage marks the deployment ready and sends ``deployment.ready``. Files live in
``artifact_root/deployments/<id>``; payloads are in ``schemas``, what a stage reads in ``inputs``.
"""

from actors.deploy.launcher import deploy_experiment
from actors.deploy.schemas import (
    MAX_OPSET,
    MAX_PRUNE_AMOUNT,
    MIN_OPSET,
    OPSET_FLOOR_REASON,
    BenchmarkOptions,
    DeployExperiment,
    DeployOptions,
    ExportOptions,
    OptimizeOptions,
    QuantizeOptions,
)
from actors.deploy.stages import benchmark_models, export_onnx, optimize_model, quantize_model

__all__ = ["MAX_OPSET", "MAX_PRUNE_AMOUNT", "MIN_OPSET", "OPSET_FLOOR_REASON", "BenchmarkOptions", "DeployExperiment", "DeployOptions",
           "ExportOptions", "OptimizeOptions", "QuantizeOptions", "benchmark_models", "deploy_experiment",
           "export_onnx", "optimize_model", "quantize_model"]
