"""The shared codec layer: what every codec in ``tokenizer`` uses."""
