"""Backends that turn a graph into a runnable artifact. ONNX Runtime runs the ONNX itself; TensorRT plans
are built on the device (``edge_mimo.build.tensorrt``)."""
