"""``python -m DICOMPlusLib.cli``: the ``dicomplus`` command."""

import sys

from DICOMPlusLib.cli.app import main

if __name__ == "__main__":  # importing it (test_packaging imports every module) runs nothing
    sys.exit(main())
