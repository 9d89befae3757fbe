"""``python -m bench``: see ``bench.run``; ``python -m bench replicas``: see ``bench.replicas``."""

import sys

if sys.argv[1:2] == ["replicas"]:
    from bench.replicas import main as replicas

    raise SystemExit(replicas(sys.argv[2:]))

from bench.run import main

raise SystemExit(main())
