"""What a critique is and how it is scored: rubric, typed results, rules, parser, refinement, loops,
ranking and tournaments, card payloads. Pure Python (no torch, no model)."""
