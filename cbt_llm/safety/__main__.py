"""``python -m cbt_llm.safety``: see :func:`cbt_llm.safety.evaluation.main`."""

import sys

from cbt_llm.safety.evaluation import main

sys.exit(main())
