"""``python -m serving.web``: the Flask page (upload an image, see the boxes; docs/CONTRACT.md §8).

The page lives in ``serving/clients/`` (``serving.clients.web``, no TensorFlow); this entry module
keeps the command users type, and ``serving.web:create_app_from_env()`` for gunicorn.
"""
import os
import sys

if __name__ == '__main__':
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from serving.clients.web import create_app_from_env, main  # noqa: E402,F401

if __name__ == '__main__':
    sys.exit(main())
