"""A Triton Python-backend model running one width's ONNX graph with ONNX Runtime (``--platform python``).

For servers without Triton's ONNX Runtime backend (the one the tests start): it stands where an
``onnxruntime_onnx`` or ``tensorrt_plan`` model would, so the packing model's BLS path runs for real.
"""

from __future__ import annotations

import json
from pathlib import Path

from ...bundle.names import INPUT_NAME, OUTPUT_NAME


class TritonPythonModel:
    """``images`` float32 [G, n, C, H, W] -> ``logits`` [G, N/n, n, K], one ONNX Runtime session."""

    def initialize(self, args: dict) -> None:
        """Open ``1/model.onnx``; the width is the config's input dims[0]."""
        from ...engines.onnxruntime import OnnxRuntimeBackend

        config = json.loads(args["model_config"])
        self.width = int(config["input"][0]["dims"][0])
        graph = Path(args["model_repository"]) / args["model_version"] / "model.onnx"
        self.backend = OnnxRuntimeBackend({self.width: graph})

    def execute(self, requests: list) -> list:
        """One ONNX Runtime run per request."""
        import triton_python_backend_utils as pb_utils

        responses = []
        for request in requests:
            groups = pb_utils.get_input_tensor_by_name(request, INPUT_NAME).as_numpy()
            logits = self.backend.run(self.width, groups)
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor(OUTPUT_NAME, logits)]))
        return responses

    def finalize(self) -> None:
        """Drop the session."""
        self.backend.close()
