"""The model layer: what the detector, evaluator, exporter and trainer share about a trained SSD
(model_info.json, checkpoints, pretrained weights, the inference graph)."""
