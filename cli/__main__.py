"""``python -m cli`` is ``p2p``."""

from cli.main import main

raise SystemExit(main())
