"""`python -m cancelnotify` runs the command line."""

from cancelnotify.cli import main

raise SystemExit(main())
