"""The defaults of the SSD's anchor matching and detection post-processing, one name each.

They live in ``utils/`` (no imports) because every layer needs them: the network and its NumPy
twin (``nets/``), the inference graph and the evaluation (``model/``), the tools' flags
(``utils/cli.py``) and the clients, which import no TensorFlow.
"""
NMS_THRESHOLD = 0.45   # IoU above which per-class non-maximum suppression drops the lower score
TOP_K = 400            # boxes kept per class before non-maximum suppression
KEEP_TOP_K = 200       # detections kept per image after suppression
MATCH_THRESHOLD = 0.5  # IoU from which an anchor is a positive of a ground-truth box (training)
