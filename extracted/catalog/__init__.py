"""The extracted catalog service: products in the legacy shape, priced with half-even rounding."""
