"""``python -m webhook`` runs the ``referee`` command line."""

import sys

from webhook.cli import main

sys.exit(main())
