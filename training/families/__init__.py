"""Model families: one small module each, in a closed registry."""
