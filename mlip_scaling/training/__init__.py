"""Training: config, loss, schedules, EMA, trainer loop, FLOP accounting, CLI."""
