"""``python -m serving.model_server``: local TF-Serving-compatible server (docs/CONTRACT.md §8).

The server lives in ``serving/server/`` (``serving.server.model_server``); this entry module only
keeps the command users type. ``--help`` lists the flags.
"""
import os
import sys

if __name__ == '__main__':
    # Run as a file too: make the repository root importable; keep TensorFlow's C++ start-up
    # chatter quiet.
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from utils import tf_logging
    tf_logging.start_tool(__name__)
    from serving.server.model_server import main
    sys.exit(main())
