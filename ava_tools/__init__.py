"""AVA dataset tools: preparation, readers, the official-equivalent evaluator and SynthAVA (no torch needed)."""
