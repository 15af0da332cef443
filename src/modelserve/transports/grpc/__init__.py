"""Triton's GRPCInferenceService over grpc.aio, with health and reflection."""
