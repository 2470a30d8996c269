"""mitogen's ``mitogen_host_pinned``, with ServerGuard's changes (sg_strategy.py)."""

import runpy
from pathlib import Path

_shared = runpy.run_path(str(Path(__file__).with_name("sg_strategy.py")))
StrategyModule = _shared["strategy_module"]("host_pinned", __name__)
