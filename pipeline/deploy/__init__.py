"""Deployment of trained deep models: ONNX export, optimisation, quantisation, benchmark.

Each stage is one module that takes plain arguments (paths, window arrays, an output path,
``on_progress`` and ``should_stop``) and returns a dataclass whose ``to_dict()`` is
JSON-safe. Nothing is imported here, so ``import pipeline.deploy`` loads neither torch nor
onnxruntime; import the stage you need:

- ``pipeline.deploy.export``: ``export_onnx`` (checkpoint -> ONNX, verified against torch).
- ``pipeline.deploy.optimize``: ``optimize_model`` (pruning, Conv-BN fusion).
- ``pipeline.deploy.quantize``: ``quantize_dynamic_torch``, ``quantize_static_onnx``,
  ``convert_fp16``.
- ``pipeline.deploy.benchmark``: ``benchmark_variants``.
- ``pipeline.deploy.loading``: ``load_model`` (plain, optimised or dynamic-INT8 checkpoints).
"""
