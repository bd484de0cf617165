"""The papers' reproduction: their tables beside the published numbers (``tables``, ``numbers/``), their figures
(``reports``) and MI-AOD's image-classification experiment (``classification``, Table 2). Nothing in the active
learning loop depends on it."""
