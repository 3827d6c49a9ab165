"""``python -m cbt_llm.safety``: see :func:`cbt_llm.safety.evaluation.main`."""

import sys

from cbt_llm.safety.evaluation import main

if __name__ == "__main__":
    sys.exit(main())
