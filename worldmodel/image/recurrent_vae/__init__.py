"""The recurrent image VAE: a decoder that refines its estimate with shared weights."""
