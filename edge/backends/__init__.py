"""Inference backends behind one interface (ONNX Runtime, TensorRT)."""
