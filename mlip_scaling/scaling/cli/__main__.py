"""``python -m mlip_scaling.scaling.cli``."""

from mlip_scaling.scaling.cli import main

raise SystemExit(main())
