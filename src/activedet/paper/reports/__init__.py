"""The papers' figures and tables for a finished experiment, ours beside the published numbers.

MI-AOD Fig. 5 and MGRAL Fig. 3 (``curves``), MI-AOD Table 5 (``timing``), Fig. 6 (``heatmaps``),
Fig. 7 (``true_positives``), MGRAL Fig. 4 (``selections``); MI-AOD Table 2 is in
``activedet.classification``. The CLI steps are in ``cli`` (``python -m activedet paper-...``).
"""
