"""The trainer's pieces (train_ssd_network.py is its flags and a short main)."""
