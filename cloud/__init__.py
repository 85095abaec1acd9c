"""The cloud stage: train with Lightning, export and verify ONNX variants, publish a signed package."""
