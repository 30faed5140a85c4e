"""``python -m DICOMPlusLib.cli``: the ``dicomplus`` command."""

import sys

from DICOMPlusLib.cli.app import main

sys.exit(main())
