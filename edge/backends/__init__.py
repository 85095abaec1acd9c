"""Inference backends behind one interface (ONNX Runtime, OpenVINO, TensorRT), what each can run, and the chain."""
