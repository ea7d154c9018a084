"""The catalog service already speaks the monolith's product shape (docs/demo-contracts.md),
so its translator is the identity: the route's `rewrite` moves the path, nothing else changes.

It is a registered Python translator rather than YAML on purpose: it is the smallest example
of one, with the same interface as the YAML translators.
"""

from __future__ import annotations

from acl import BaseTranslator, register


@register("catalog")
class CatalogTranslator(BaseTranslator):
    """Identity in every direction; `bidirectional` trivially holds."""

    name = "catalog"
    bidirectional = True
