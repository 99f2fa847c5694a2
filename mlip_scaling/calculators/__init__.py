"""Calculators: ASE ScalingCalculator, batched inference, torch-sim interface."""
