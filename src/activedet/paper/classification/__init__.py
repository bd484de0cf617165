"""Active image classification with MI-AOD's instance uncertainty learning (its Table 2).

A classifier with two adversarial heads trained by MI-AOD's label / min / max schedule, run as
active learning on sklearn's digits (the CPU analog, seconds) or on a local CIFAR-10 (the paper's
setting, on a cluster); random, entropy and discrepancy selection.
"""
