"""Bring your own model: `edgeferry package` turns an external ONNX detector or classifier into a signed package.

onnx_file reads and checks the file, op_support holds each runtime's op list, model_metadata reads Ultralytics'
metadata and the labels, model_io picks the output contract, recipe the preprocessing, inputs the package's own
images, evaluate the task figures, variants builds and gates FP32 and INT8, and package runs it all and publishes.
"""
