"""Tiny, randomly initialised models with the real architectures, built and saved locally.

The product code loads them through exactly the `from_pretrained` calls it uses for the real
weights; nothing here is a mock. Tokenizers are trained on the spot, since the hub is out of reach.
"""
