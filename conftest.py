"""Repository-root conftest: makes the toolkit importable and TensorFlow quiet in tests."""
import os

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
os.environ.setdefault('MPLBACKEND', 'Agg')
