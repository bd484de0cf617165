"""Datasets: the COCO-JSON reader every dataset goes through (``coco``), fixed-size tensor batches
(``dataset``), the digit-scenes generator and the labeled/unlabeled splits."""
