"""``python -m serving.client``: the detection client of a served model (docs/CONTRACT.md §8).

The client lives in ``serving/clients/`` (``serving.clients.client``, no TensorFlow); this entry
module only keeps the command users type. ``--help`` lists the flags.
"""
import os
import sys

if __name__ == '__main__':
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from serving.clients.client import main
    sys.exit(main())
