"""``python -m webhook`` runs the ``referee`` command line."""

import sys

from webhook.cli.main import main

sys.exit(main())
