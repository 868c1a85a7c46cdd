"""Radiance-field building blocks (tensor factors, colour MLP)."""
