"""`python -m keras_yolov7.cli ...`, the same as the `keras-yolov7` command."""

import sys

from keras_yolov7.cli.main import main

sys.exit(main())
