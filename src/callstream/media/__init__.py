"""Media: the canonical frame, the shared clock, the mixer, tone generation."""
