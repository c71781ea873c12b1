"""Entry point: python -m analytics_worker --socket PATH --worker-id N [--max-frame BYTES]."""

import os
import sys

# One computation per worker process: keep BLAS/OpenMP from spawning a thread per core in every
# worker (the engine runs several). The engine may override these through the environment.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ.setdefault(_var, "1")


def _run():
    from analytics_worker.server import main
    sys.exit(main())


if __name__ == "__main__":
    _run()
