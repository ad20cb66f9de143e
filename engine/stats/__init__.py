"""Round-level figures: throughput, quality, model progress (plain maths in `bradley_terry`)."""
