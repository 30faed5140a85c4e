"""``python -m DICOMPlusLib.engine``: serve requests on stdin/stdout until stdin closes."""

import sys

from DICOMPlusLib.engine.server import main

if __name__ == "__main__":
    sys.exit(main())
